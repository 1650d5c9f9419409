/* Behaviour shared by every page, loaded from base.html. The Content-Security-Policy allows
   scripts from this site only (no inline script or on* attributes), so pages declare what they
   need with data- attributes and this file wires it up. Every page works without it. */
(function () {
  'use strict';

  /* <form data-confirm="确定……吗？">: ask before submitting. */
  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  /* <button data-print>: print the page (meeting binders, agendas). */
  document.addEventListener('click', function (event) {
    var button = event.target.closest && event.target.closest('[data-print]');
    if (button) {
      event.preventDefault();
      window.print();
    }
  });

  /* <select data-county-select="ID">: show only the counties of the chosen city in select#ID
     (the server validates the pair anyway). */
  document.querySelectorAll('select[data-county-select]').forEach(function (citySelect) {
    var countySelect = document.getElementById(citySelect.dataset.countySelect);
    if (!countySelect) { return; }
    function sync() {
      var city = citySelect.value;
      countySelect.querySelectorAll('optgroup').forEach(function (group) {
        var match = group.label === city;
        group.hidden = !match;
        group.disabled = !match;
      });
      var chosen = countySelect.selectedOptions[0];
      if (chosen && chosen.dataset.city && chosen.dataset.city !== city) {
        countySelect.value = '';
      }
    }
    citySelect.addEventListener('change', sync);
    sync();
  });

  /* <select data-counties='{"城市": ["区县", …]}' data-county-target="ID">: the portal filters'
     county list follows the chosen city at once (without JS it is filled after 筛选). */
  document.querySelectorAll('select[data-counties][data-county-target]').forEach(function (citySelect) {
    var countySelect = document.getElementById(citySelect.dataset.countyTarget);
    var counties;
    try { counties = JSON.parse(citySelect.dataset.counties); } catch (e) { return; }
    if (!countySelect) { return; }
    var anyLabel = countySelect.options.length ? countySelect.options[0].textContent : '全部区县';
    function fill() {
      var keep = countySelect.value;
      var list = counties[citySelect.value] || [];
      while (countySelect.options.length) { countySelect.remove(0); }
      countySelect.add(new Option(anyLabel, ''));
      list.forEach(function (name) { countySelect.add(new Option(name, name, false, name === keep)); });
      countySelect.disabled = list.length === 0;
    }
    citySelect.addEventListener('change', fill);
    fill();
  });

  /* <fieldset data-field-picker>: a keyword box filters the grouped checkboxes (应用领域), and a
     badge counts the ticked ones. Every checkbox stays reachable with Tab and Space. */
  document.querySelectorAll('[data-field-picker]').forEach(function (picker) {
    var filter = picker.querySelector('[data-picker-filter]');
    var count = picker.querySelector('[data-picker-count]');
    var empty = picker.querySelector('[data-picker-empty]');
    function updateCount() {
      var n = picker.querySelectorAll('input[type=checkbox]:checked').length;
      if (count) { count.textContent = n ? '已选 ' + n + ' 个' : ''; }
    }
    function applyFilter() {
      var words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      picker.querySelectorAll('[data-picker-group]').forEach(function (group) {
        var area = group.querySelector('legend').textContent.toLowerCase();
        var visible = 0;
        group.querySelectorAll('[data-picker-option]').forEach(function (option) {
          var text = area + ' ' + option.textContent.toLowerCase();
          var match = !words.length || words.every(function (w) { return text.indexOf(w) !== -1; }) ||
            option.querySelector('input').checked;
          option.hidden = !match;
          if (match) { visible += 1; }
        });
        group.hidden = visible === 0;
        shown += visible;
      });
      if (empty) { empty.hidden = shown !== 0; }
    }
    if (filter) {
      filter.hidden = false;
      filter.addEventListener('input', applyFilter);
      filter.addEventListener('keydown', function (event) {
        if (event.key === 'Enter') { event.preventDefault(); }  /* never submits the form */
      });
    }
    picker.addEventListener('change', updateCount);
    updateCount();
  });

  /* <input type="checkbox" data-check-all="NAME">: ticks every checkbox named NAME in its form;
     a [data-bulk-count] in that form shows how many are ticked. */
  function updateBulkCount(form) {
    var counter = form.querySelector('[data-bulk-count]');
    var all = form.querySelector('[data-check-all]');
    if (!all) { return; }
    var boxes = form.querySelectorAll('input[type=checkbox][name="' + all.dataset.checkAll + '"]');
    var ticked = Array.prototype.filter.call(boxes, function (box) { return box.checked; }).length;
    if (counter) { counter.textContent = ticked ? '（' + ticked + '）' : ''; }
    all.checked = ticked > 0 && ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
  }
  document.addEventListener('change', function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== 'checkbox' || !box.form) { return; }
    if (box.dataset.checkAll) {
      box.form.querySelectorAll('input[type=checkbox][name="' + box.dataset.checkAll + '"]').forEach(function (other) {
        other.checked = box.checked;
      });
    }
    updateBulkCount(box.form);
  });

  /* <details class="nav-menu">: the navbar menus open without script; this closes the others when
     one opens, and every one on a click outside or on Escape (focus goes back to its summary). */
  var menus = Array.prototype.slice.call(document.querySelectorAll('details.nav-menu'));
  menus.forEach(function (menu) {
    menu.addEventListener('toggle', function () {
      if (menu.open) {
        menus.forEach(function (other) { if (other !== menu) { other.open = false; } });
      }
    });
  });
  document.addEventListener('click', function (event) {
    menus.forEach(function (menu) {
      if (menu.open && !menu.contains(event.target)) { menu.open = false; }
    });
  });
  document.addEventListener('keydown', function (event) {
    if (event.key !== 'Escape') { return; }
    menus.forEach(function (menu) {
      if (menu.open) {
        menu.open = false;
        menu.querySelector('summary').focus();
      }
    });
  });
})();
