"""The catalog's names, titles, references and presets as plain data, so `biaslab list` answers at once.

Importing the experiments themselves (`biaslab.experiments`) pulls in torch, scipy,
pandas and every experiment module: seconds on a small machine. Listing the
catalog needs none of that. This table is checked against the live catalog by
`tests/test_catalog_index.py`: adding or renaming an experiment without updating
it fails the test that names the difference.
"""

from __future__ import annotations

# name -> (title, reference, presets); order as `biaslab list` prints it
INDEX: dict[str, tuple[str, str, tuple[str, ...]]] = {
    'batch-size-sharpness': ("Large-batch training reaches sharper minima (and Dinh et al.'s caveat)", 'Keskar et al. 2017, On Large-Batch Training for Deep Learning (ICLR); Dinh et al. 2017, Sharp Minima Can Generalize for Deep Nets (ICML)', ('tiny', 'quick', 'paper')),
    'benign-overfitting': ('Benign overfitting: interpolating noisy labels is harmless when the covariance has a heavy small-eigenvalue tail', 'Bartlett, Long, Lugosi & Tsigler 2020, Benign overfitting in linear regression (PNAS)', ('tiny', 'quick', 'paper')),
    'calibration': ('Calibration against width and training time: ECE and NLL past interpolation', 'Guo, Pleiss, Sun & Weinberger 2017, On Calibration of Modern Neural Networks (ICML)', ('tiny', 'quick', 'paper')),
    'compressibility': ('Trained networks compress: pruning, quantization and lottery tickets across widths', 'Frankle & Carbin 2019, The Lottery Ticket Hypothesis (ICLR); Han, Mao & Dally 2016, Deep Compression (ICLR); Arora, Ge, Neyshabur & Zhang 2018, Stronger Generalization Bounds via a Compression Approach (ICML)', ('tiny', 'quick', 'paper')),
    'diagonal-networks': ('Small init finds the sparse (min-L1) interpolant, large init the min-L2 one', 'Woodworth, Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry & Srebro 2020, Kernel and Rich Regimes in Overparametrized Models (COLT)', ('tiny', 'quick', 'paper')),
    'double-descent': ('Double descent in linear models, random features, forests and networks', 'Belkin, Hsu, Ma & Mandal 2019 (PNAS); Belkin, Hsu & Xu 2019 (SIAM J. Math. Data Sci.); Hastie et al. 2019; Nakkiran et al. 2019 (ICLR 2020); Curth et al. 2023 (NeurIPS)', ('tiny', 'quick', 'paper')),
    'edge-of-stability': ('Full-batch GD drives sharpness up to 2/eta and then trains at the edge of stability', 'Cohen, Kaur, Li, Kolter & Talwalkar 2021, Gradient Descent on Neural Networks Typically Occurs at the Edge of Stability (ICLR)', ('tiny', 'quick', 'paper')),
    'generalization-measures': ('Which complexity measure ranks the generalization gap (sharpness vs norms)', 'Jiang, Neyshabur, Mobahi, Krishnan & Bengio 2020', ('tiny', 'quick', 'paper')),
    'grokking': ('Grokking: test accuracy jumps long after the training set is memorized, driven by weight decay', 'Power et al. 2022, Grokking (arXiv:2201.02177); Nanda et al. 2023, Progress measures for grokking via mechanistic interpretability (ICLR); Liu, Michaud & Tegmark 2023, Omnigrok (ICLR)', ('tiny', 'quick', 'paper')),
    'grokking-phase-diagram': ('Grokking phase diagram: training fraction x weight decay', 'Power et al. 2022, Grokking (arXiv:2201.02177), Fig. 2; Liu et al. 2022, Towards Understanding Grokking: An Effective Theory of Representation Learning (NeurIPS)', ('tiny', 'quick', 'paper')),
    'implicit-gradient-regularization': ('GD follows the gradient flow of L + (h/4)||grad L||^2: distance O(h^2) to it, O(h) to the plain flow', 'Barrett & Dherin 2021, Implicit Gradient Regularization (ICLR); Smith, Dherin, Barrett & De 2021, On the Origin of Implicit Regularization in Stochastic Gradient Descent (ICLR)', ('tiny', 'quick', 'paper')),
    'estimate-implicit-regularizer': ("Gradient matching recovers the explicit penalty behind early stopping (ridge, 1/(eta t)) and dropout (Wager's L2)", 'Wager, Wang & Liang 2013, Dropout Training as Adaptive Regularization (NeurIPS); Ali, Kolter & Tibshirani 2019, A Continuous-Time View of Early Stopping for Least Squares (AISTATS)', ('tiny', 'quick', 'paper')),
    'kernels-vs-convolutions': ('Kernels vs convolutions: three interpolating models, ordered and shuffled MNIST-1D', 'Wilson 2025 (ICML), Sec. 7; Greydanus 2020, Scaling down deep learning (MNIST-1D)', ('tiny', 'quick', 'paper')),
    'lazy-vs-rich': ('Large output scale makes training lazy: weights and tangent kernel freeze and the net behaves like its linearization', 'Chizat, Oyallon & Bach 2019, On Lazy Training in Differentiable Programming (NeurIPS); Woodworth et al. 2020 (COLT)', ('tiny', 'quick', 'paper')),
    'loss-landscape': ('Loss landscapes of narrow vs wide, small- vs large-batch solutions; the straight path from init', 'Li, Xu, Taylor, Studer & Goldstein 2018, Visualizing the Loss Landscape of Neural Nets (NeurIPS); Goodfellow, Vinyals & Saxe 2015 (ICLR); Lucas, Bae, Zhang, Fort, Zemel & Grosse 2021 (ICML)', ('tiny', 'quick', 'paper')),
    'matrix-factorization': ('Deep factorizations complete low-rank matrices that depth 2 and the nuclear norm cannot', 'Arora, Cohen, Hu & Luo 2019, Implicit Regularization in Deep Matrix Factorization (NeurIPS); Gunasekar et al. 2017', ('tiny', 'quick', 'paper')),
    'max-margin': ('GD on separable data converges to the max-margin direction, at a 1/ln t rate', 'Soudry, Hoffer, Nacson, Gunasekar & Srebro 2018, The Implicit Bias of Gradient Descent on Separable Data (JMLR)', ('tiny', 'quick', 'paper')),
    'min-norm': ('GD on least squares converges to the interpolant nearest its start', 'e.g. Gunasekar et al. 2018, Characterizing Implicit Bias in Terms of Optimization Geometry (ICML)', ('tiny', 'quick', 'paper')),
    'mode-connectivity': ('Barriers between SGD solutions: straight line, trained Bezier curve, weight matching, spawned copies', 'Garipov, Izmailov, Podoprikhin, Vetrov & Wilson 2018 (NeurIPS); Ainsworth, Hayase & Srinivasa 2023, Git Re-Basin (ICLR); Frankle, Dziugaite, Roy & Carbin 2020, Linear Mode Connectivity and the Lottery Ticket Hypothesis (ICML)', ('tiny', 'quick', 'paper')),
    'random-labels': ('Networks fit random labels and random inputs; test error rises to chance', 'Zhang, Bengio, Hardt, Recht & Vinyals 2017, Understanding deep learning requires rethinking generalization (ICLR; arXiv:1611.03530)', ('tiny', 'quick', 'paper')),
    'scaling-laws': ('Scaling laws: a solvable model (test loss ~ n^-alpha, N^-alpha from a power-law spectrum) and MLPs on MNIST-1D', 'Maloney, Roberts & Sully 2022, A Solvable Model of Neural Scaling Laws (arXiv:2210.16859)', ('tiny', 'quick', 'paper')),
    'small-init-relu': ('From a small init, ReLU neurons align to a few directions after a plateau', 'Boursier, Pillaud-Vivien & Flammarion 2022, Gradient flow dynamics of shallow ReLU networks for square loss and orthogonal inputs (NeurIPS)', ('tiny', 'quick', 'paper')),
    'soft-inductive-bias': ('Soft inductive bias: an order-penalized high-order polynomial fits simple and complex targets', 'Wilson 2025, Deep Learning is Not So Mysterious or Different (ICML), Sec. 2 and Fig. 1', ('tiny', 'quick', 'paper')),
    'trees-vs-nets': ('Trees vs neural nets on tabular data: irregular targets, rotations, uninformative features', 'Grinsztajn, Oyallon & Varoquaux 2022, Why do tree-based models still outperform deep learning on tabular data? (NeurIPS D&B)', ('tiny', 'quick', 'paper')),
    'width-sweep': ('Test error keeps falling as width grows past interpolation', 'Neyshabur, Tomioka & Srebro 2014, In Search of the Real Inductive Bias (arXiv:1412.6614)', ('tiny', 'quick', 'paper')),
}  # fmt: skip
