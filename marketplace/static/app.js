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
})();
