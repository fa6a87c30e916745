// Incidents, files and the supervisor's escalations in Debian's Chromium (playwright-core).
// Started by services/web/tests/it/incidents.rs, which runs the platform and the cabinet after
// submitting two appeals: the e-diary one (NUMBER, with the applicant's PDF FILE_NAME, whose
// sha256 is FILE_SHA256) to the Kamchatka center, and a diploma one (COLLEGE_NUMBER, with the
// same PDF as DIPLOMA_NAME) to the college COLLEGE.
//
// Env: BASE_URL, SCREENSHOTS, CHROMIUM, NUMBER, COLLEGE_NUMBER, COLLEGE, FILE_NAME, DIPLOMA_NAME,
// FILE_SHA256.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { accessible, launch, person as signIn, step } from './harness.mjs';

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOTS;
const number = process.env.NUMBER;
const collegeNumber = process.env.COLLEGE_NUMBER;
const fileName = process.env.FILE_NAME;
const diplomaName = process.env.DIPLOMA_NAME;
const fileSha = process.env.FILE_SHA256;
mkdirSync(shots, { recursive: true });

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
const browser = await launch();
const person = (organization, role) => signIn(browser, base, organization, role);

/** Opens a message's card from the list, found by its number. */
async function openCard(page, n) {
  await page.goto(`${base}/cabinet?q=${n}`);
  await page.locator(`#results a:text-is("${n}")`).click();
  await page.waitForURL(/\/cabinet\/tickets\//);
  return page.url();
}

/** The form of `slug` inside `scope`, its <details> opened. */
async function openForm(scope, slug) {
  const details = scope.locator(`details[data-command=${slug}]`);
  if (!(await details.evaluate((d) => d.open))) await details.locator('summary').click();
  return details.locator('form');
}

/** Submits `form` and waits until htmx has swapped in the fresh `target`. */
async function submit(page, form, target = '#card') {
  await page.locator(target).evaluate((element) => { element.dataset.before = '1'; });
  await form.locator('button[type=submit]').click();
  await page.locator(`${target}:not([data-before])`).waitFor({ timeout: 15000 });
}

async function expectFlash(page, text, scope = '#card') {
  await page.locator(`${scope} .flash`).filter({ hasText: text }).waitFor({ timeout: 10000 });
}

/** A file link's download as the person's browser gets it: status, headers, bytes. */
async function fetchFile(context, href) {
  const response = await context.request.get(`${base}${href}`, { maxRedirects: 0 });
  return { status: response.status(), headers: response.headers(), body: await response.body() };
}

try {
  const coordinator = await person('41-kcioko', 'coordinator');
  const c = coordinator.page;
  const cardUrl = await openCard(c, number);

  // The applicant's file: its name, type and size in the card; the download streams the exact
  // bytes with the headers a browser needs to save it safely.
  const link = c.locator('#card ul.files a', { hasText: fileName });
  assert.match(await c.locator('#card ul.files li').first().textContent(), /PDF, \d+ Б/);
  const pdfHref = await link.getAttribute('href');
  const pdf = await fetchFile(coordinator.context, pdfHref);
  assert.equal(pdf.status, 200);
  assert.equal(pdf.headers['content-type'], 'application/pdf');
  assert.equal(pdf.headers['x-content-type-options'], 'nosniff');
  assert.equal(Number(pdf.headers['content-length']), pdf.body.length);
  assert.match(pdf.headers['content-disposition'], /^attachment; filename="[^"]+"; filename\*=UTF-8''/);
  assert.equal(decodeURIComponent(pdf.headers['content-disposition'].split("UTF-8''")[1]), fileName);
  assert.equal(sha256(pdf.body), fileSha);
  const [download] = await Promise.all([c.waitForEvent('download'), link.click()]);
  assert.equal(download.suggestedFilename(), fileName);
  assert.equal(sha256(readFileSync(await download.path())), fileSha);
  step(`downloaded ${fileName}: ${pdf.body.length} bytes, sha256 matches`);

  // A file of a type no one may attach is refused beside the file field, in Russian.
  const subject = 'Нет доступа к электронному дневнику, хотя все условия выполнены';
  let form = await openForm(c.locator('#card'), 'open-situation-center');
  await form.locator('textarea[name=subject]').fill(subject);
  const exe = Buffer.alloc(1024);
  exe.write('MZ', 0, 'latin1');
  exe.writeUInt32LE(0x80, 0x3c);
  exe.write('PE\0\0', 0x80, 'latin1');
  await form.locator('input[type=file]').setInputFiles({ name: 'program.exe', mimeType: 'application/octet-stream', buffer: exe });
  await submit(c, form);
  const fieldError = c.locator('details[data-command=open-situation-center] .field-error');
  assert.match(await fieldError.textContent(), /Файл «program\.exe» не принят/);
  assert.equal(await c.locator('#card article.incident').count(), 0, 'nothing opened');
  step(`a forbidden type was refused: "${await fieldError.textContent()}"`);

  // The situation-center incident with a PNG screenshot (of this very page).
  const png = await c.screenshot();
  form = await openForm(c.locator('#card'), 'open-situation-center');
  assert.equal(await form.locator('input[name=user_account]').inputValue(), 'maria@example.org');
  assert.equal(await form.locator('input[name=service]').inputValue(), 'Инциденты ИС ИЭП');
  await form.locator('textarea[name=subject]').fill(subject);
  await form.locator('input[type=file]').setInputFiles({ name: 'screenshot.png', mimeType: 'image/png', buffer: png });
  await submit(c, form);
  await expectFlash(c, 'инцидент открыт');
  const incident = c.locator('#card article.incident');
  assert.equal(await incident.count(), 1);
  assert.match(await incident.locator('h3').textContent(), new RegExp(`Ситуационный центр: ${subject}`));
  assert.match(await incident.locator('.incident-state').textContent(), /В работе \(первая линия\)/);
  assert.match(await incident.locator('ul.files').textContent(), /screenshot\.png \(PNG, \d+ КБ\)/);
  const pngHref = await incident.locator('ul.files a').getAttribute('href');
  const screenshot = await fetchFile(coordinator.context, pngHref);
  assert.equal(screenshot.headers['content-type'], 'image/png');
  assert.equal(sha256(screenshot.body), sha256(png));
  step(`situation-center incident opened with screenshot.png (${png.length} bytes)`);

  // Two tabs: the second line in one, a stale attempt in the other.
  const stale = await coordinator.context.newPage();
  await stale.goto(cardUrl);
  await submit(c, await openForm(incident, 'escalate'));
  await expectFlash(c, 'Выполнено');
  assert.match(await incident.locator('.incident-state').textContent(), /вторая линия/);
  // Still open on the second line, the request is possible: only the version is stale.
  form = await openForm(stale.locator('#card article.incident'), 'request-information');
  await form.locator('textarea[name=comment]').fill('Пришлите снимок экрана с ошибкой входа.');
  await submit(stale, form);
  await expectFlash(stale, 'изменено другим пользователем');
  assert.match(await stale.locator('#card article.incident .incident-state').textContent(), /вторая линия/);
  await stale.close();
  step('escalated to the second line; a stale tab was told and shown the fresh card');

  await c.goto(cardUrl);
  assert.match(await c.locator('ol.history').textContent(), /Открыт инцидент.*Инцидент передан на вторую линию/s);
  await c.screenshot({ path: `${shots}/card-incidents.png`, fullPage: true });
  await accessible(c, 'card with incidents');

  // The list marks the message and filters by it, in the URL.
  await c.goto(`${base}/cabinet?q=${number}`);
  const row = c.locator('tr', { has: c.locator(`a:text-is("${number}")`) });
  await row.locator('.incident-mark').waitFor({ timeout: 10000 });
  await c.check('input[name=incident]');
  await c.click('form.filters button[type=submit]');
  await c.waitForURL(/incident=1/);
  await row.waitFor();
  step('the list marks the message "инцидент" and filters by it');

  // Another organization gets neither file by URL. Its head: the development users share their
  // subjects across organizations, and intake lets an uploader read their own upload, so this
  // organization's coordinator would read the screenshot "dev-coordinator" uploaded above.
  const other = await person('16-rcmko', 'head');
  for (const href of [pdfHref, pngHref]) {
    const refused = await fetchFile(other.context, href);
    assert.equal(refused.status, 403, href);
    assert.notEqual(sha256(refused.body), fileSha);
  }
  step('another organization\'s head was refused both files');

  // Seed 001: the college escalates to Рособрнадзор, found by search.
  const collegeCoordinator = await person(process.env.COLLEGE, 'coordinator');
  const k = collegeCoordinator.page;
  const collegeCardUrl = await openCard(k, collegeNumber);
  form = await openForm(k.locator('#card'), 'open-federal-supervisor');
  await form.locator('input[type=search]').fill('Рособр');
  await k.waitForFunction(() => {
    const options = [...document.querySelectorAll('select[name=handler] option')];
    return options.length === 1 && options[0].value === 'rosobrnadzor';
  });
  await form.locator('select[name=handler]').selectOption('rosobrnadzor');
  await form.locator('textarea[name=subject]').fill('Проверить сведения о дипломе в ФРДО: неверный год окончания');
  await submit(k, form);
  await expectFlash(k, 'направлено на проверку');
  const escalation = k.locator('#card article.incident');
  assert.match(await escalation.textContent(), /Адресат\s*Рособрнадзор/);
  assert.match(await escalation.locator('.incident-state').textContent(), /На проверке/);
  assert.equal(await escalation.locator('details[data-command=resolve]').count(), 0, 'the supervisor answers, not the college');
  step('the college escalated to Рособрнадзор');

  // Рособрнадзор's coordinator, with their own token, sees and answers it.
  const supervisor = await person('rosobrnadzor', 'coordinator');
  const s = supervisor.page;
  await s.click('nav.sections a[data-section=escalations]');
  await s.waitForURL(/\/cabinet\/escalations$/);
  const item = s.locator('section.escalation', { hasText: `Обращение № ${collegeNumber}` });
  await item.waitFor({ timeout: 10000 });
  assert.match(await item.locator('.appeal-text').textContent(), /год окончания техникума/);
  const diploma = item.locator('ul.files a', { hasText: diplomaName });
  const diplomaFile = await fetchFile(supervisor.context, await diploma.getAttribute('href'));
  assert.equal(diplomaFile.status, 200);
  assert.equal(sha256(diplomaFile.body), fileSha);
  await s.screenshot({ path: `${shots}/escalations.png`, fullPage: true });
  await accessible(s, 'escalations');
  const resolution = 'Сведения о дипломе в ФРДО исправлены, данные на Госуслугах обновятся в течение суток.';
  form = await openForm(item, 'resolve');
  await form.locator('textarea[name=comment]').fill(resolution);
  await submit(s, form, '#escalations');
  await expectFlash(s, 'Выполнено', '#escalations');
  assert.equal(await s.locator('section.escalation', { hasText: `Обращение № ${collegeNumber}` }).count(), 0);
  step('Рособрнадзор answered the escalation on its own page');

  await k.goto(collegeCardUrl);
  const answered = k.locator('#card article.incident');
  assert.equal(await answered.locator('.resolution').textContent(), resolution);
  assert.match(await answered.locator('.incident-state').textContent(), /Решён/);
  step('the college sees Рособрнадзор\'s answer in its card');
  console.log('DONE');
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
}
