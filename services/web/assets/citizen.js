// The citizen pages' script: the appeal form (classifier with search, the organization search,
// uploads, the proof of work, one submission) and, on every citizen page, the height reported
// to the site that embeds the widget.
(function () {
  'use strict';

  // The site that frames the widget follows the page's height (see /widget.js).
  function reportHeight() {
    if (window.parent === window) { return; }
    window.parent.postMessage({ type: 'pos-widget-height', height: document.documentElement.scrollHeight }, '*');
  }
  window.addEventListener('load', reportHeight);
  if (window.ResizeObserver) { new ResizeObserver(reportHeight).observe(document.body); }

  var form = document.getElementById('appeal-form');
  if (!form) { return; }
  var data = JSON.parse(form.dataset.classifier);
  var category = document.getElementById('category');
  var subcategory = document.getElementById('subcategory');
  var fact = document.getElementById('fact');
  var picked = document.getElementById('picked');
  var organizationField = document.getElementById('organization-field');
  var organizationLegend = document.getElementById('organization-legend');
  var organizationSearch = document.getElementById('organization-search');
  var token = form.querySelector('input[name=token]').value;
  var pow = document.getElementById('pow');
  var submit = document.getElementById('submit');
  var submitStatus = document.getElementById('submit-status');

  function fill(select, items, selected) {
    var keep = selected || select.value;
    while (select.options.length > 1) { select.remove(1); }
    items.forEach(function (item) {
      var option = new Option(item.name, item.id);
      if (item.id === keep) { option.selected = true; }
      select.add(option);
    });
    if (!items.some(function (i) { return i.id === keep; })) { select.value = ''; }
  }

  function factById(id) { return data.facts.filter(function (f) { return f.id === id; })[0]; }
  function subcategoryById(id) { return data.subcategories.filter(function (s) { return s.id === id; })[0]; }

  function onCategory() {
    fill(subcategory, data.subcategories.filter(function (s) { return s.category === category.value; }));
    onSubcategory();
  }
  function onSubcategory() {
    fill(fact, data.facts.filter(function (f) { return f.subcategory === subcategory.value; }));
    onFact();
  }

  // The organization, where the fact's addressee is one the applicant picks.
  var lastType = null;
  function onFact() {
    var chosen = factById(fact.value);
    var type = chosen && chosen.pickedType;
    organizationField.hidden = !type;
    picked.required = !!type;
    if (!type) { picked.value = ''; lastType = null; reportHeight(); return; }
    organizationLegend.textContent = 'Выберите ' + chosen.pickedLabel + ' *';
    if (type !== lastType) {
      lastType = type;
      searchOrganizations(String(form.dataset.defaultOrganizationType) === String(type) ? form.dataset.defaultOrganization : '');
    }
    reportHeight();
  }

  var searchTimer = null;
  function searchOrganizations(preselect) {
    var region = document.getElementById('region');
    var query = new URLSearchParams({
      region: region ? region.value : form.dataset.region, type: String(lastType), q: organizationSearch.value.trim(),
    });
    fetch('/widget/organizations?' + query.toString(), { credentials: 'omit' })
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (found) {
        fill(picked, found.map(function (o) { return { id: o.id, name: o.name + (o.address ? ' — ' + o.address : '') }; }),
          preselect || picked.value);
      })
      .catch(function () { /* the select keeps what it has */ });
  }
  organizationSearch.addEventListener('input', function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(function () { searchOrganizations(''); }, 250);
  });

  category.addEventListener('change', onCategory);
  // A federal body's form asks for the region: the directory to pick from is that region's.
  var regionSelect = document.getElementById('region');
  if (regionSelect) {
    regionSelect.addEventListener('change', function () { if (lastType) { searchOrganizations(''); } });
  }
  subcategory.addEventListener('change', onSubcategory);
  fact.addEventListener('change', onFact);
  // A category given by the site (data-category) or kept from a returned form.
  if (category.value) {
    fill(subcategory, data.subcategories.filter(function (s) { return s.category === category.value; }), subcategory.value);
    fill(fact, data.facts.filter(function (f) { return f.subcategory === subcategory.value; }), fact.value);
  }
  onFact();

  // Search over the classifier: any word of the topic, its subcategory or category.
  var topicSearch = document.getElementById('topic-search');
  var topicResults = document.getElementById('topic-results');
  var topicStatus = document.getElementById('topic-status');
  function pathOf(f) {
    var s = subcategoryById(f.subcategory) || {};
    var c = data.categories.filter(function (c) { return c.id === s.category; })[0] || {};
    return { category: c, subcategory: s, text: [c.name, s.name, f.name].join(' ').toLowerCase() };
  }
  function choose(f) {
    var path = pathOf(f);
    category.value = path.category.id;
    fill(subcategory, data.subcategories.filter(function (s) { return s.category === category.value; }), path.subcategory.id);
    fill(fact, data.facts.filter(function (x) { return x.subcategory === subcategory.value; }), f.id);
    onFact();
    topicResults.hidden = true;
    topicStatus.textContent = 'Выбрана тема: ' + f.name;
    fact.focus();
  }
  topicSearch.addEventListener('input', function () {
    var words = topicSearch.value.toLowerCase().split(/\s+/).filter(Boolean);
    topicResults.innerHTML = '';
    if (!words.length) { topicResults.hidden = true; topicStatus.textContent = ''; reportHeight(); return; }
    var found = data.facts.filter(function (f) {
      var text = pathOf(f).text;
      return words.every(function (w) { return text.indexOf(w) >= 0; });
    }).slice(0, 8);
    found.forEach(function (f) {
      var path = pathOf(f);
      var li = document.createElement('li');
      var button = document.createElement('button');
      button.type = 'button';
      button.className = 'link';
      button.textContent = f.name;
      var where = document.createElement('span');
      where.className = 'hint';
      where.textContent = ' (' + path.category.name + ' → ' + path.subcategory.name + ')';
      button.appendChild(where);
      button.addEventListener('click', function () { choose(f); });
      li.appendChild(button);
      topicResults.appendChild(li);
    });
    topicResults.hidden = !found.length;
    topicStatus.textContent = found.length ? 'Найдено тем: ' + found.length : 'Ничего не найдено';
    reportHeight();
  });

  // The proof of work: SHA-256 of "<token>:<n>" with pow-bits leading zero bits, found in the
  // background while the citizen fills the form, in slices so the page stays responsive.
  var bits = Number(form.dataset.powBits);
  function zeroBits(bytes) {
    var count = 0;
    for (var i = 0; i < bytes.length; i++) {
      if (bytes[i] === 0) { count += 8; continue; }
      var b = bytes[i];
      while ((b & 0x80) === 0) { count++; b <<= 1; }
      break;
    }
    return count;
  }
  var proof = new Promise(function (resolve) {
    var n = 0;
    function slice() {
      for (var end = n + 2000; n < end; n++) {
        if (zeroBits(window.sha256.array(token + ':' + n)) >= bits) { resolve(String(n)); return; }
      }
      setTimeout(slice, 0);
    }
    slice();
  });
  proof.then(function (answer) { pow.value = answer; });

  // Files: checked here first (type and size, as the hint says), then uploaded at once.
  var files = document.getElementById('files');
  var filesStatus = document.getElementById('files-status');
  var fileList = document.getElementById('file-list');
  var maxBytes = Number(form.dataset.maxFileBytes);
  var maxFiles = Number(form.dataset.maxFiles);
  var extensions = form.dataset.extensions.split(',');
  var uploading = 0;
  function addFile(id, name) {
    var li = document.createElement('li');
    var input = document.createElement('input');
    input.type = 'hidden'; input.name = 'attachment'; input.value = id + ':' + name;
    var span = document.createElement('span'); span.textContent = name;
    var remove = document.createElement('button');
    remove.type = 'button'; remove.className = 'link'; remove.setAttribute('data-remove-file', '');
    remove.textContent = 'Удалить';
    var hidden = document.createElement('span'); hidden.className = 'visually-hidden'; hidden.textContent = ' файл ' + name;
    remove.appendChild(hidden);
    li.appendChild(input); li.appendChild(span); li.appendChild(document.createTextNode(' ')); li.appendChild(remove);
    fileList.appendChild(li);
    reportHeight();
  }
  fileList.addEventListener('click', function (event) {
    var button = event.target.closest('[data-remove-file]');
    if (button) { button.closest('li').remove(); filesStatus.textContent = 'Файл удалён'; files.focus(); reportHeight(); }
  });
  files.addEventListener('change', function () {
    var chosen = Array.prototype.slice.call(files.files);
    files.value = '';
    var messages = [];
    chosen.forEach(function (file) {
      var extension = (file.name.split('.').pop() || '').toLowerCase();
      if (fileList.children.length + uploading >= maxFiles) {
        messages.push(file.name + ': не больше ' + maxFiles + ' файлов'); return;
      }
      if (extensions.indexOf(extension) < 0) {
        messages.push(file.name + ': такой тип не принимается'); return;
      }
      if (file.size > maxBytes) {
        messages.push(file.name + ': файл слишком большой'); return;
      }
      uploading++;
      filesStatus.textContent = 'Загружается: ' + file.name;
      proof.then(function (answer) {
        return fetch('/widget/upload', {
          method: 'POST', body: file, credentials: 'omit',
          headers: { 'X-Form-Token': token, 'X-Proof': answer, 'X-File-Name': encodeURIComponent(file.name) },
        });
      }).then(function (r) {
        return r.json().catch(function () { return { error: 'Не удалось загрузить файл.' }; });
      }).then(function (result) {
        uploading--;
        if (result.id) { addFile(result.id, result.name); filesStatus.textContent = 'Файл загружен: ' + result.name; }
        else { filesStatus.textContent = file.name + ': ' + result.error; }
      }).catch(function () {
        uploading--;
        filesStatus.textContent = file.name + ': не удалось загрузить файл, попробуйте ещё раз.';
      });
    });
    if (messages.length) { filesStatus.textContent = messages.join('; '); }
  });

  // One submission: the button is off once the form goes; the proof is awaited first.
  var sending = false;
  form.addEventListener('submit', function (event) {
    if (sending) { event.preventDefault(); return; }
    if (uploading > 0) {
      event.preventDefault();
      submitStatus.textContent = 'Дождитесь окончания загрузки файлов.';
      return;
    }
    if (!pow.value) {
      event.preventDefault();
      submitStatus.textContent = 'Подготовка отправки…';
      proof.then(function () { form.requestSubmit(submit); });
      return;
    }
    sending = true;
    submit.disabled = true;
    submit.setAttribute('aria-disabled', 'true');
    submitStatus.textContent = 'Отправляется…';
  });

  var summary = document.getElementById('error-summary');
  if (summary) { summary.focus(); }
})();
