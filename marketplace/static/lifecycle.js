/* The signing form: the product list shows only products of the firms chosen as parties
   (select[data-products-of] lists products with data-owner; the server checks it anyway). */
(function () {
  'use strict';
  document.querySelectorAll('select[data-products-of]').forEach(function (productSelect) {
    var parties = document.getElementById(productSelect.dataset.productsOf);
    if (!parties) { return; }
    function sync() {
      var chosen = {};
      Array.prototype.forEach.call(parties.selectedOptions, function (option) { chosen[option.value] = true; });
      var any = Object.keys(chosen).length > 0;
      Array.prototype.forEach.call(productSelect.options, function (option) {
        var show = !any || chosen[option.dataset.owner] === true;
        option.hidden = !show;
        if (!show) { option.selected = false; }
      });
    }
    parties.addEventListener('change', sync);
    sync();
  });
})();
