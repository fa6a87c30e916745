// The cabinet's story in a real browser: Debian's Chromium driven by playwright-core.
// Started by services/web/tests/it/browser.rs, which runs the platform and the cabinet and
// answers on stdin: it prints SUBMIT when the coordinator watches the New folder, and the test
// submits an appeal and replies "SUBMITTED <number>".
//
// Env: BASE_URL, SCREENSHOTS (a directory), CHROMIUM (default /usr/bin/chromium).

import { mkdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import assert from 'node:assert/strict';
import { accessible, launch, person as signIn, step } from './harness.mjs';

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOTS;
mkdirSync(shots, { recursive: true });
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();

const browser = await launch();

function person(organization, role, screenshot) {
  return signIn(browser, base, organization, role, { screenshot: screenshot && `${shots}/${screenshot}` });
}


async function command(page, slug, fill) {
  const details = page.locator(`details[data-command=${slug}]`);
  if (await details.count()) {
    if (!(await details.evaluate((d) => d.open))) await details.locator('summary').click();
  }
  const form = page.locator(`form[data-command=${slug}]`);
  if (fill) await fill(form);
  // Marks the card on screen, to know when htmx has swapped in the one the command returned.
  await page.locator('#card').evaluate((card) => { card.dataset.before = '1'; });
  await form.locator('button[type=submit]').click();
  await page.locator('#card:not([data-before])').waitFor({ timeout: 10000 });
}

async function expectFlash(page, text) {
  await page.locator('#card .flash').filter({ hasText: text }).waitFor({ timeout: 10000 });
}

try {
  // The executor signs in first: the development sign-in puts them into the staff directory.
  const executor = await person('41-kcioko', 'executor');
  const coordinator = await person('41-kcioko', 'coordinator', 'sign-in.png');
  const c = coordinator.page;
  assert.equal(await c.locator('h1').textContent(), 'Новые');
  step('coordinator watches New');
  console.log('SUBMIT');
  const reply = (await lines.next()).value;
  const number = reply.split(' ')[1];
  // No reload: the list asks for news by itself.
  const row = c.locator('tr', { has: c.locator(`a:text-is("${number}")`) });
  await row.waitFor({ timeout: 20000 });
  assert.match(await row.locator('.fast').textContent(), /⚡/);
  const clock = await row.locator('.clock').textContent();
  assert.match(clock, /^\d+ дн\. \d+ ч \d+ мин \/ до 23:59 \d\d\.\d\d\.\d{4}$/, clock);
  await c.waitForFunction(() => /^\(\d+\) Новые/.test(document.title));
  assert.match(await c.locator('#folders a[data-folder=new] .count').textContent(), /^[1-9]/);
  step(`new message ${number} appeared with ⚡ and "${clock}"; title "${await c.title()}"`);
  await c.screenshot({ path: `${shots}/list.png`, fullPage: true });
  await accessible(c, 'list');

  // The filters live in the URL.
  await c.check('input[name=fast]');
  await c.click('form.filters button[type=submit]');
  await c.waitForURL(/fast=1/);
  await row.waitFor();

  await row.locator('a').first().click();
  await c.waitForURL(/\/cabinet\/tickets\//);
  const cardUrl = c.url();
  assert.match(await c.locator('#card-title').textContent(), new RegExp(`№ ${number}.*⚡`));
  assert.match(await c.locator('.clock-box').first().textContent(), /Срок ответа.*до 23:59/);
  await command(c, 'assign', async (form) => {
    await form.locator('select[name=executor]').selectOption('dev-executor');
    const due = new Date(Date.now() + 3 * 86400e3).toISOString().slice(0, 10);
    await form.locator('input[name=execution_due]').fill(due);
  });
  await expectFlash(c, 'Выполнено');
  assert.match(await c.locator('#card .badge').textContent(), /Назначен исполнитель/);
  // The execution clock is armed by the SLA service from the assignment's event, a moment later.
  for (let i = 0; !/до 23:59/.test(await c.locator('.clock-box').nth(1).textContent()); i++) {
    assert.ok(i < 50, 'the execution deadline shows up');
    await c.waitForTimeout(200);
    await c.reload();
  }
  step('coordinator assigned the executor');

  // Two tabs of the executor: what one does, the other learns instead of overwriting it.
  const e = executor.page;
  const stale = await executor.context.newPage();
  await e.goto(cardUrl);
  await stale.goto(cardUrl);
  await command(e, 'take-in-work');
  await expectFlash(e, 'Выполнено');
  await command(stale, 'take-in-work');
  await expectFlash(stale, 'Сообщение изменено другим пользователем');
  assert.match(await stale.locator('#card .badge').textContent(), /В работе/);
  await stale.close();
  step('a stale command showed the fresh card');

  const prepare = (text) => command(e, 'prepare', async (form) => {
    await form.locator('select[name=type]').selectOption('resolved');
    await form.locator('textarea[name=text]').fill(text);
  });
  await prepare('Здравствуйте! Доступ к электронному дневнику предоставлен.');
  await expectFlash(e, 'Выполнено');
  await command(e, 'send-for-approval');
  await expectFlash(e, 'Выполнено');
  assert.match(await e.locator('#card .badge').textContent(), /На утверждении/);
  step('executor prepared the answer and sent it for approval');

  const head = await person('41-kcioko', 'head');
  const h = head.page;
  await h.goto(cardUrl);
  assert.equal(await h.locator('form[data-command=assign]').count(), 0, 'the head is not offered the coordinator\'s commands');
  await command(h, 'return-for-rework', (form) => form.locator('textarea[name=comment]').fill('Добавьте, как войти в дневник.'));
  await expectFlash(h, 'Выполнено');
  step('head returned the answer for rework');

  await e.goto(cardUrl);
  await prepare('Здравствуйте! Доступ к электронному дневнику предоставлен: войдите через Госуслуги, раздел «Дневник».');
  await expectFlash(e, 'Выполнено');
  await command(e, 'send-for-approval');
  await expectFlash(e, 'Выполнено');

  await h.goto(cardUrl);
  await command(h, 'approve');
  await expectFlash(h, 'Выполнено');
  assert.match(await h.locator('#card .badge').textContent(), /Ответ направлен заявителю/);
  const actions = await h.locator('ol.history li').evaluateAll((items) => items.map((li) => li.dataset.action));
  assert.deepEqual(actions, [
    'received', 'executor assigned', 'taken in work', 'answer prepared', 'sent for approval',
    'returned for rework', 'answer prepared', 'sent for approval', 'approved',
  ]);
  assert.match(await h.locator('ol.history').textContent(), /Возвращено на доработку — Кузнецова Анна.*Добавьте, как войти в дневник\./s);
  step(`head approved; the history has ${actions.length} steps`);
  await h.screenshot({ path: `${shots}/card.png`, fullPage: true });
  await accessible(h, 'card');

  // Another organization's coordinator gets nothing by URL.
  const other = await person('41-minobr', 'coordinator');
  const response = await other.page.goto(cardUrl);
  assert.equal(response.status(), 403);
  assert.doesNotMatch(await other.page.content(), new RegExp(number));
  step('another organization\'s coordinator was refused the card');

  // A form posted without the CSRF token, or with a made-up one, is refused.
  const id = cardUrl.split('/').pop();
  for (const form of [{ version: '1' }, { version: '1', csrf: 'f'.repeat(64) }]) {
    const refused = await coordinator.context.request.post(`${base}/cabinet/tickets/${id}/take-in-work`, { form, maxRedirects: 0 });
    assert.equal(refused.status(), 403);
  }
  const signOut = await coordinator.context.request.post(`${base}/cabinet/sign-out`, { form: {}, maxRedirects: 0 });
  assert.equal(signOut.status(), 403, 'even sign-out needs the token');
  step('forms without the CSRF token were refused');

  await c.goto(`${base}/cabinet`);
  await c.click('button:text("Выйти")');
  await c.waitForURL(/sign-in/);
  const after = await c.goto(`${base}/cabinet`);
  assert.match(after.url(), /sign-in/, 'signed out');
  step('signed out');
  console.log('DONE');
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
  // Stdin stays open on the test's side; let go of it so that node can exit.
  input.close();
  process.stdin.destroy();
}
