/* 批量导入: offer only the batches of the chosen list (the server checks the pair anyway). */
(function () {
  'use strict';
  var BATCH_KIND = { opportunities: 'opportunity', products: 'product' };
  var kindSelect = document.querySelector('select[data-import-kind]');
  var batchSelect = document.querySelector('select[data-import-batch]');
  if (!kindSelect || !batchSelect) { return; }
  function sync() {
    var wanted = BATCH_KIND[kindSelect.value] || null;
    batchSelect.querySelectorAll('optgroup').forEach(function (group) {
      var options = group.querySelectorAll('option');
      var match = wanted !== null && options.length > 0 && options[0].dataset.kind === wanted;
      group.hidden = !match;
      group.disabled = !match;
    });
    var chosen = batchSelect.selectedOptions[0];
    if (chosen && chosen.dataset.kind && chosen.dataset.kind !== wanted) {
      batchSelect.value = '';
    }
    batchSelect.disabled = wanted === null;
  }
  kindSelect.addEventListener('change', sync);
  sync();
})();
