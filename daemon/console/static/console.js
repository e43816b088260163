// edgepass console: the only script. It keeps the event log's first page
// current by asking events.json for what came after the newest event shown,
// and offers a copy button for a new service token. Everything else works
// without it. Text goes in with textContent only.
(function () {
  'use strict';
  // A new service token: a button that copies it (the token stays in the
  // page's textarea; nothing is sent anywhere).
  var token = document.getElementById('new-token');
  var copy = document.getElementById('copy-token');
  if (!token || !copy || !navigator.clipboard) { return; }
  var status = document.getElementById('copy-status');
  copy.hidden = false;
  copy.addEventListener('click', function () {
    token.select();
    navigator.clipboard.writeText(token.value).then(function () {
      status.textContent = 'Copied.';
    }, function () {
      status.textContent = 'Could not copy: select the token and copy it.';
    });
  });
}());

(function () {
  'use strict';
  var live = document.getElementById('live');
  if (!live) { return; }
  var rows = document.querySelector('tbody.event-rows');
  var status = document.getElementById('live-status');
  var after = live.getAttribute('data-after') || '0';
  var query = live.getAttribute('data-query') || '';
  var timer = null;

  function cell(tr, text, cls) {
    var td = document.createElement('td');
    if (cls) { td.className = cls; }
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function stamp(t) {
    return t ? t.replace('T', ' ').replace(/\.\d+/, '').replace(/\+00:00$/, 'Z') : '-';
  }

  function row(e) {
    var tr = document.createElement('tr');
    tr.setAttribute('data-seq', String(e.seq));
    tr.className = 'fresh';
    cell(tr, stamp(e.time), 'nowrap');
    var kind = document.createElement('span');
    kind.className = 'kind';
    kind.textContent = e.kind || '';
    cell(tr, '').appendChild(kind);
    var actor = cell(tr, (e.actor || '') + ' ');
    var type = document.createElement('small');
    type.textContent = '(' + (e.actorType || '') + ')';
    actor.appendChild(type);
    cell(tr, e.source || '');
    var who = cell(tr, '');
    if (e.sub) {
      var a = document.createElement('a');
      a.href = '/console/user?sub=' + encodeURIComponent(e.sub);
      a.textContent = e.user || e.email || e.sub;
      who.appendChild(a);
    } else {
      who.textContent = e.user || '-';
    }
    var extra = (e.sid ? ' session ' + e.sid : '') + (e.kid ? ' key ' + e.kid : '');
    if (extra) {
      var small = document.createElement('small');
      small.textContent = extra;
      who.appendChild(small);
    }
    var why = cell(tr, e.reason ? e.reason + (e.detail ? '; ' : '') : '');
    var detail = document.createElement('small');
    detail.textContent = e.detail || '';
    why.appendChild(detail);
    return tr;
  }

  function poll() {
    var url = 'events.json?after=' + encodeURIComponent(after) + (query ? '&' + query : '');
    fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.json();
      })
      .then(function (p) {
        var list = p.events || [];
        if (list.length) {
          var empty = rows.querySelector('tr.empty');
          if (empty) { empty.remove(); }
        }
        for (var i = 0; i < list.length; i++) {
          rows.insertBefore(row(list[i]), rows.firstChild);
        }
        if (p.next) { after = String(p.next); }
        status.textContent = 'Live: updated ' + new Date().toLocaleTimeString() + '.';
        timer = setTimeout(poll, 2000);
      })
      .catch(function (err) {
        status.textContent = 'Live updates paused (' + err.message + '); reload the page.';
        timer = setTimeout(poll, 10000);
      });
  }

  document.addEventListener('visibilitychange', function () {
    if (document.hidden) { clearTimeout(timer); } else { clearTimeout(timer); poll(); }
  });
  timer = setTimeout(poll, 2000);
}());
