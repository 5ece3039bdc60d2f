// The one script of every report page; a fixed text (no data from the store in it), needing no network.
// Click a column header of a table.sortable (or press Enter on it) to sort its rows: columns marked
// data-numeric sort by each cell's data-value (empty and NaN last, either way), the others as text.
// Typing in an input.filter hides the rows of its table that do not contain the text.
// `#sort=COLUMN` (or `#sort=COLUMN:desc`) in the address sorts on load.
(function () {
  function keyOf(cell, numeric) {
    if (!numeric) return cell.textContent.trim().toLowerCase();
    var v = parseFloat(cell.getAttribute('data-value'));
    return isNaN(v) ? null : v;
  }
  function sortTable(table, index, order) {
    var body = table.tBodies[0], head = table.tHead.rows[0].cells[index];
    var numeric = head.hasAttribute('data-numeric');
    var rows = Array.prototype.slice.call(body.rows);
    var sign = order === 'desc' ? -1 : 1;
    rows.sort(function (a, b) {
      var x = keyOf(a.cells[index], numeric), y = keyOf(b.cells[index], numeric);
      if (x === null || x === '') return (y === null || y === '') ? 0 : 1;
      if (y === null || y === '') return -1;
      var d = numeric ? x - y : x.localeCompare(y, undefined, {numeric: true});
      return sign * d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) { th.removeAttribute('data-order'); th.removeAttribute('aria-sort'); });
    head.setAttribute('data-order', order);
    head.setAttribute('aria-sort', order === 'asc' ? 'ascending' : 'descending');
  }
  var tables = document.querySelectorAll('table.sortable');
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.classList.add('sortable');
      th.tabIndex = 0;
      var go = function () { sortTable(table, index, th.getAttribute('data-order') === 'asc' ? 'desc' : 'asc'); };
      th.addEventListener('click', go);
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); go(); } });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('input.filter'), function (input) {
    var table = document.getElementById(input.getAttribute('data-table'));
    var count = document.getElementById(input.getAttribute('data-count'));
    input.addEventListener('input', function () {
      var needle = input.value.trim().toLowerCase(), shown = 0, rows = table.tBodies[0].rows;
      Array.prototype.forEach.call(rows, function (r) {
        var keep = !needle || r.textContent.toLowerCase().indexOf(needle) >= 0;
        r.classList.toggle('hidden', !keep);
        if (keep) shown += 1;
      });
      if (count) count.textContent = needle ? 'showing ' + shown + ' of ' + rows.length : '';
    });
  });
  var wanted = decodeURIComponent((location.hash.match(/sort=([^&]+)/) || [])[1] || '').split(':');
  if (wanted[0]) Array.prototype.forEach.call(tables, function (table) {
    var cells = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var index = cells.findIndex(function (th) { return th.getAttribute('data-column') === wanted[0]; });
    if (index >= 0) sortTable(table, index, wanted[1] === 'desc' ? 'desc' : 'asc');
  });
})();
