/* Job progress bars (templates/jobs/_progress.html): poll /jobs/<id>/status.json about once a
   second until the job ends, then show its result link (or reload the page when the box asks
   for it with data-reload-when-done). Without this script the page offers a refresh link. */
(function () {
  'use strict';

  var STYLES = { queued: 'secondary', running: 'primary', succeeded: 'success', failed: 'danger' };

  function setField(box, name, text) {
    box.querySelectorAll('[data-job-field="' + name + '"]').forEach(function (el) {
      el.textContent = text;
    });
  }

  function render(box, s) {
    var badge = box.querySelector('[data-job-field="status_label"]');
    if (badge) {
      badge.className = 'badge text-bg-' + (STYLES[s.status] || 'secondary');
    }
    setField(box, 'status_label', s.status_label);
    setField(box, 'percent_text', s.percent === null ? '' : s.percent + '%');
    setField(box, 'message', s.message || '');
    setField(box, 'counts', s.total ? s.done + ' / ' + s.total : String(s.done));
    setField(box, 'elapsed', s.elapsed || '—');
    var bar = box.querySelector('[data-job-bar]');
    if (bar) {
      if (s.percent === null) {
        bar.removeAttribute('value');
      } else {
        bar.value = s.percent;
      }
      bar.textContent = (s.percent || 0) + '%';
    }
    var done = box.querySelector('[data-job-done-link]');
    var link = box.querySelector('[data-job-url]');
    if (done && link && s.url) {
      link.href = s.url;
      done.hidden = false;
    }
  }

  function watch(box) {
    var url = box.dataset.statusUrl;
    var failures = 0;
    function poll() {
      fetch(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' })
        .then(function (response) {
          if (!response.ok) { throw new Error('HTTP ' + response.status); }
          return response.json();
        })
        .then(function (s) {
          failures = 0;
          render(box, s);
          if (s.finished) {
            box.dataset.finished = '1';
            if (box.hasAttribute('data-reload-when-done')) { window.location.reload(); }
            return;
          }
          window.setTimeout(poll, 1000);
        })
        .catch(function () {
          failures += 1;
          if (failures < 30) { window.setTimeout(poll, Math.min(10000, 1000 * failures)); }
        });
    }
    window.setTimeout(poll, 1000);
  }

  document.querySelectorAll('[data-job-progress]').forEach(function (box) {
    if (box.dataset.finished !== '1' && box.dataset.statusUrl) { watch(box); }
  });
})();
