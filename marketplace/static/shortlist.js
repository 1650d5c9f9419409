/* Drag-and-drop reordering (progressive enhancement: the 上移/下移 buttons work without it). */
(function () {
  var list = document.getElementById('shortlist');
  if (!list) { return; }
  var token = document.querySelector('meta[name="csrf-token"]').content;
  var dragged = null;
  list.querySelectorAll('li[draggable="true"]').forEach(function (item) {
    item.addEventListener('dragstart', function (event) {
      dragged = item;
      event.dataTransfer.effectAllowed = 'move';
      event.dataTransfer.setData('text/plain', item.dataset.entryId);
      item.classList.add('opacity-50');
    });
    item.addEventListener('dragend', function () { item.classList.remove('opacity-50'); });
    item.addEventListener('dragover', function (event) {
      if (dragged && dragged !== item && dragged.dataset.pinned === item.dataset.pinned) {
        event.preventDefault();
        event.dataTransfer.dropEffect = 'move';
      }
    });
    item.addEventListener('drop', function (event) {
      event.preventDefault();
      if (!dragged || dragged === item) { return; }
      var form = document.createElement('form');
      form.method = 'post';
      form.action = list.dataset.moveUrl.replace('/entries/0/', '/entries/' + dragged.dataset.entryId + '/');
      [['csrf_token', token], ['to_rank', item.dataset.rank]].forEach(function (pair) {
        var input = document.createElement('input');
        input.type = 'hidden'; input.name = pair[0]; input.value = pair[1];
        form.appendChild(input);
      });
      document.body.appendChild(form);
      form.submit();
    });
  });
})();
