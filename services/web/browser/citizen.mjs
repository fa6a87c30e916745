// The citizen's story in a real browser: Debian's Chromium driven by playwright-core.
// Started by services/web/tests/it/citizen.rs, which runs the platform, the web service and a
// "school site" that embeds the widget. The script prints "SUBMITTED <number>" once the appeal
// is registered; the test checks it, has the school ask for more information, and replies
// "LINK <url>" with the link of the registration e-mail. The script sends the information on the
// appeal's page ("INFORMED"); the school answers with a file ("ANSWERED"); the script downloads
// it and rejects the answer.
//
// Env: BASE_URL (the web service), SITE_URL (the school's site), SCREENSHOTS, CHROMIUM.

import { mkdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import assert from 'node:assert/strict';
import { accessible, launch, newContext, step } from './harness.mjs';

const base = process.env.BASE_URL;
const site = process.env.SITE_URL;
const shots = process.env.SCREENSHOTS;
mkdirSync(shots, { recursive: true });
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();

const browser = await launch();

try {
  const context = await newContext(browser, { viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  await page.goto(site);
  const frameElement = page.locator('iframe.pos-widget');
  await frameElement.waitFor();
  assert.equal(await frameElement.getAttribute('title'), 'Форма обращения в организацию');
  const frame = page.frameLocator('iframe.pos-widget');
  const f = await (await frameElement.elementHandle()).contentFrame();
  await frame.locator('h1').waitFor();
  assert.equal(await frame.locator('h1').textContent(), 'Обращение в организацию');
  step('the school site shows the widget in its frame');

  // Search over the classifier and pick the topic.
  await frame.locator('#topic-search').fill('столовой');
  const result = frame.locator('#topic-results button', { hasText: 'Качество питания в школьной столовой' });
  await result.click();
  assert.equal(await frame.locator('#category').inputValue(), 'education');
  assert.equal(await frame.locator('#subcategory').inputValue(), 'education.meals');
  assert.equal(await frame.locator('#fact').inputValue(), 'education.meals.quality');
  // The fact needs a school: the one whose site this is, preselected, from the region's directory.
  await frame.locator('#organization-field').waitFor({ state: 'visible' });
  assert.match(await frame.locator('#organization-legend').textContent(), /Выберите школу/);
  await f.waitForFunction(() => document.querySelector('#picked').options.length > 2);
  assert.equal(await frame.locator('#picked').inputValue(), '41-school-pk-1');
  // The search narrows the directory.
  await frame.locator('#organization-search').fill('Елизовская');
  await f.waitForFunction(() => {
    const values = [...document.querySelector('#picked').options].map((o) => o.value).filter(Boolean);
    return values.length === 1 && values[0] === '41-school-elizovo-2';
  });
  await frame.locator('#organization-search').fill('');
  await f.waitForFunction(() => [...document.querySelector('#picked').options].some((o) => o.value === '41-school-pk-1'));
  await frame.locator('#picked').selectOption('41-school-pk-1');
  step('topic found by search; the school preselected and searchable');

  await frame.locator('#text').fill('Здравствуйте! В школьной столовой третью неделю подают холодные обеды.');
  await frame.locator('#full_name').fill('Иванова Мария Петровна');
  await frame.locator('#email').fill('maria@example.org');
  await frame.locator('#phone').fill('позвоните маме');
  await frame.locator('#consent').check();
  // The limits are shown before any upload.
  assert.match(await frame.locator('#files-hint').textContent(), /До 10 файлов, каждый до 10 МБ\. Типы: txt, .*pdf/);
  await frame.locator('#files').setInputFiles({
    name: 'меню.txt', mimeType: 'text/plain', buffer: Buffer.from('Меню на неделю: суп, каша, компот.\n'),
  });
  await frame.locator('#file-list li', { hasText: 'меню.txt' }).waitFor();
  assert.match(await frame.locator('#files-status').textContent(), /Файл загружен/);
  step('a file uploaded at once');
  await page.screenshot({ path: `${shots}/widget.png`, fullPage: true });
  await accessible(f, 'widget');

  // Intake refuses the phone: the error shows beside the field, linked to it.
  await frame.locator('#submit').click();
  await frame.locator('#phone-error').waitFor();
  assert.match(await frame.locator('#phone-error').textContent(), /номер телефона/);
  assert.equal(await frame.locator('#phone').getAttribute('aria-invalid'), 'true');
  assert.match(await frame.locator('#phone').getAttribute('aria-describedby'), /phone-error/);
  assert.match(await frame.locator('#error-summary').textContent(), /Телефон/);
  // What was entered stays, the file too.
  assert.equal(await frame.locator('#email').inputValue(), 'maria@example.org');
  assert.equal(await frame.locator('#fact').inputValue(), 'education.meals.quality');
  await frame.locator('#file-list li', { hasText: 'меню.txt' }).waitFor();
  await accessible(f, 'widget with errors');
  step('the phone error is shown beside the phone');

  await frame.locator('#phone').fill('+7 914 000-00-00');
  await frame.locator('#consent').check();
  // The citizen double-clicks: one appeal.
  await frame.locator('#submit').dblclick();
  await frame.locator('#appeal-number').waitFor({ timeout: 20000 });
  const number = (await frame.locator('#appeal-number').textContent()).trim();
  const registered = await frame.locator('#appeal-registered').textContent();
  assert.match(registered, /^\d\d\.\d\d\.\d{4} \d\d:\d\d по местному времени \(UTC\+12\)$/, registered);
  step(`registered № ${number} at ${registered}`);
  console.log(`SUBMITTED ${number}`);

  const reply = (await lines.next()).value;
  assert.match(reply, /^LINK /);
  const link = reply.slice(5);
  const applicant = await newContext(browser, { acceptDownloads: true });
  const p = await applicant.newPage();
  await p.goto(link);
  await p.waitForURL(/\/appeal\/[0-9a-f-]{36}$/);
  assert.doesNotMatch(p.url(), /v1\./, 'the link leaves the address bar');
  assert.equal(await p.locator('h1').textContent(), `Обращение № ${number}`);
  assert.equal(await p.locator('#status').textContent(), 'Организации нужны дополнительные сведения от вас');
  assert.match(await p.locator('section', { has: p.locator('#information-title') }).textContent(), /Организация просит: Уточните, пожалуйста, в какую смену/);
  await accessible(p, 'appeal page asking for information');
  await p.locator('#information').fill('Во вторую смену, 3 «Б» класс.');
  await p.locator('#information-files').setInputFiles({
    name: 'расписание.txt', mimeType: 'text/plain', buffer: Buffer.from('Вторая смена: 13:30–18:00.\n'),
  });
  await p.locator('form[data-form=information] button[type=submit]').click();
  await p.locator('.flash.success').waitFor();
  assert.match(await p.locator('.flash').textContent(), /Сведения отправлены/);
  step('the applicant sent the information asked for, with a file');
  console.log('INFORMED');

  assert.equal((await lines.next()).value, 'ANSWERED');
  await p.goto(p.url().split('?')[0]);
  assert.equal(await p.locator('#status').textContent(), 'Ответ готов');
  assert.match(await p.locator('#answer').textContent(), /Меню столовой проверено/);
  assert.match(await p.locator('#answer-due').textContent(), /^до 23:59 \d\d\.\d\d\.\d{4}/);
  const history = await p.locator('ol.history li').evaluateAll((items) => items.map((li) => li.dataset.action || ''));
  assert.ok(history.includes('approved') && history.includes('information received'), history.join(','));
  // The answer's file, streamed from intake.
  const [download] = await Promise.all([p.waitForEvent('download'), p.locator('#answer a[download]').click()]);
  // Debian's headless Chromium names a download with a non-ASCII name "download"; the name is
  // checked in the header instead.
  const href = await p.locator('#answer a[download]').getAttribute('href');
  const headers = (await applicant.request.get(`${base}${href}`)).headers();
  assert.match(headers['content-disposition'], new RegExp(`^attachment; .*filename\\*=UTF-8''${encodeURIComponent('акт-проверки.txt')}$`));
  assert.equal(readFileSync(await download.path(), 'utf8'), 'Akt proverki stolovoi: narushenii net.\n');
  await p.screenshot({ path: `${shots}/appeal-page.png`, fullPage: true });
  await accessible(p, 'appeal page');
  step('the applicant reads the answer and downloads its file');

  await p.locator('#reject-comment').fill('Обеды по-прежнему холодные, дегустация ничего не изменит.');
  await p.locator('form[data-form=reject] button[type=submit]').click();
  await p.locator('.flash.success').waitFor();
  assert.match(await p.locator('.flash').textContent(), /рассмотрят повторно/);
  assert.equal(await p.locator('#status').textContent(), 'Рассматривается повторно');
  assert.equal(await p.locator('form[data-form=reject]').count(), 0, 'nothing to reject any more');
  step('the applicant rejected the answer: re-review');

  // A form of the appeal page without the session's CSRF token is refused.
  const refused = await applicant.request.post(`${p.url().split('?')[0]}/accept`, { form: { version: '1', rating: '5' }, maxRedirects: 0 });
  assert.equal(refused.status(), 403);
  // Another browser without the link gets nothing.
  const stranger = await newContext(browser);
  const other = await stranger.newPage();
  const response = await other.goto(p.url().split('?')[0]);
  assert.equal(response.status(), 401);
  assert.doesNotMatch(await other.content(), /холодные/);
  step('no session, no page; no token, no form');
  console.log('DONE');
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
  input.close();
  process.stdin.destroy();
}
