"""The report's full list of flagged examples: one table row each, sortable and filterable in the page.

Every flagged example is a static ``<tr>`` (so the list is complete without script, and a browser
test can count it); a few lines of vanilla script sort the rows when a column header is clicked (again:
the other direction) and hide the rows that a filter rules out. Numeric cells carry their exact value
in ``data-v``, so sorting never parses rounded text. No library, nothing fetched.
"""

from __future__ import annotations

import html

from noisyfit.detect.issues import LabelIssues

CSS = """
.filters{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:center;margin:0 0 8px;font-size:12px}
.filters select,.filters input{font-size:12px;padding:2px 4px}.filters input{min-width:16em}
.scroll{max-height:640px;overflow:auto;border:1px solid #e3e3e3}
#flagged-table{width:100%}#flagged-table thead th{position:sticky;top:0;z-index:1}
#flagged-table th button{all:unset;cursor:pointer;font-weight:600}
#flagged-table th[aria-sort=ascending] button::after{content:" \\25B2"}
#flagged-table th[aria-sort=descending] button::after{content:" \\25BC"}
#flagged-table td.id{max-width:28ch;overflow-wrap:anywhere}#flagged-table td.reason{min-width:24ch;color:#555}
"""

SCRIPT = """
(function () {
  var table = document.getElementById('flagged-table');
  if (!table) return;
  var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
  var heads = table.tHead.rows[0].cells, sorted = {col: -1, dir: 1};
  function value(row, col, numeric) {
    var cell = row.cells[col], v = cell.getAttribute('data-v');
    if (v === null) v = cell.textContent;
    return numeric ? parseFloat(v) : v.toLowerCase();
  }
  function sortBy(col) {
    var numeric = heads[col].getAttribute('data-type') === 'num';
    sorted.dir = sorted.col === col ? -sorted.dir : 1;
    sorted.col = col;
    var keyed = rows.map(function (r, k) { return [value(r, col, numeric), k, r]; });
    keyed.sort(function (a, b) {
      var an = numeric && isNaN(a[0]), bn = numeric && isNaN(b[0]);
      if (an || bn) return an === bn ? a[1] - b[1] : (an ? 1 : -1);  // missing values last, either way
      if (a[0] < b[0]) return -sorted.dir;
      if (a[0] > b[0]) return sorted.dir;
      return a[1] - b[1];  // ties keep the most-suspicious-first order
    });
    var frag = document.createDocumentFragment();
    keyed.forEach(function (x) { frag.appendChild(x[2]); });
    body.appendChild(frag);
    for (var i = 0; i < heads.length; i++) {
      if (i === col) heads[i].setAttribute('aria-sort', sorted.dir > 0 ? 'ascending' : 'descending');
      else heads[i].removeAttribute('aria-sort');
    }
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    var b = th.querySelector('button');
    if (b) b.addEventListener('click', function () { sortBy(col); });
  });
  var cls = document.getElementById('flagged-class'), given = document.getElementById('flagged-given');
  var sugg = document.getElementById('flagged-sugg'), text = document.getElementById('flagged-text');
  var count = document.getElementById('flagged-count');
  var haystack = rows.map(function (r) {
    return (r.querySelector('td.id').textContent + ' ' + r.querySelector('td.reason').textContent).toLowerCase();
  });
  function filter() {
    var c = cls.value, g = given.value, s = sugg.value, t = text.value.trim().toLowerCase(), shown = 0;
    rows.forEach(function (r, k) {
      var rg = r.getAttribute('data-given'), rs = r.getAttribute('data-sugg');
      var ok = (c === '' || rg === c || rs === c) && (g === '' || rg === g) && (s === '' || rs === s) &&
               (t === '' || haystack[k].indexOf(t) >= 0);
      r.hidden = !ok;
      if (ok) shown++;
    });
    count.textContent = shown + ' of ' + rows.length + ' shown';
  }
  [cls, given, sugg].forEach(function (el) { el.addEventListener('change', filter); });
  text.addEventListener('input', filter);
})();
"""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _select(el_id: str, label: str, names: list[str]) -> str:
    options = "".join(f"<option value='{k}'>{_e(n)}</option>" for k, n in enumerate(names))
    return (f"<label>{label} <select id='{el_id}'><option value=''>any</option>{options}</select></label>")


def flagged_section(issues: LabelIssues) -> str:
    """``<section id='flagged'>``: filters, then a table of every flagged example, most suspicious first."""
    records = issues.records()
    known = issues.true_labels is not None
    heads = [("num", "rank"), ("num", "index"), ("text", "id"), ("num", "score"), ("text", "given"),
             ("text", "suggested"), ("num", "p(suggested)")] + ([("text", "true")] if known else [])
    head = "".join(f"<th data-type='{t}'><button type='button'>{_e(n)}</button></th>" for t, n in heads)
    body = []
    for rank, (r, pos) in enumerate(zip(records, issues.issue_positions()), 1):
        conf = r["suggested_confidence"]
        cells = [f"<td data-v='{rank}'>{rank}</td>", f"<td data-v='{r['index']}'>{r['index']}</td>",
                 f"<td class='l id'>{_e(r['id'])}</td>", f"<td data-v='{r['score']!r}'>{r['score']:.4f}</td>",
                 f"<td class='l given'>{_e(r['given_label'])}</td>",
                 f"<td class='l sugg'>{_e(r['suggested_label'])}</td>",
                 ("<td data-v=''>–</td>" if conf is None else f"<td data-v='{conf!r}'>{conf:.3f}</td>")]
        if known:
            cells.append(f"<td class='l true'>{_e(issues.name(int(issues.true_labels[pos])))}</td>")
        cells.append(f"<td class='l reason'>{_e(r['reason'])}</td>")
        body.append(f"<tr data-given='{r['given']}' data-sugg='{r['suggested']}'>{''.join(cells)}</tr>")
    names = list(issues.class_names)
    filters = ("<div class='filters'>" + _select("flagged-class", "class (given or suggested)", names)
               + _select("flagged-given", "given", names) + _select("flagged-sugg", "suggested", names)
               + "<label>text <input type='search' id='flagged-text' placeholder='id or reason contains'></label>"
               + f"<span id='flagged-count'>{len(records)} of {len(records)} shown</span></div>")
    note = ("<p class='note'>Every flagged example, most suspicious first (lowest score). Click a column header to "
            "sort by it (again: the other way). <i>class</i> keeps the rows whose given or suggested label it "
            "is; the text box searches ids and reasons. <i>p(suggested)</i>: the detector's "
            "probability of its suggested label (what <code>--clean relabel-or-drop</code> compares with "
            "its threshold).</p>")
    return (f"<section id='flagged'><h2>All {len(records)} flagged examples</h2>{note}{filters}<div class='scroll'>"
            f"<table id='flagged-table' data-total='{len(records)}'><thead><tr>{head}<th class='l'>reason</th></tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table></div></section>")
