// The organization's settings (Настройки организации) in Debian's Chromium, driven by
// playwright-core. Started by services/web/tests/it/admin.rs, which runs the platform and the
// cabinet, and afterwards checks with the services what the pages saved.
//
// The org admin adds an executor with two roles, creates an auto-rule that sends e-diary messages
// to them, changes the quiet hours and adds a mailing list, takes the site form's snippet for one
// category, and deactivates the executor; the head writes a template, sees the preview fill its
// placeholders as they type, an unknown placeholder named beside the text, and saves it; an
// executor is refused every settings page by address; forms without the CSRF token are refused.
// Each page passes the axe check; screenshots go to SCREENSHOTS/admin-*.png.
//
// Env: BASE_URL, SCREENSHOTS (a directory), CHROMIUM (default /usr/bin/chromium).

import { mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';
import { accessible, launch, person as signIn, step } from './harness.mjs';

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOTS;
mkdirSync(shots, { recursive: true });
const org = '41-kcioko';
const browser = await launch();
const person = (role) => signIn(browser, base, org, role);

async function saved(page) {
  await page.locator('.flash.done').filter({ hasText: 'Сохранено' }).waitFor({ timeout: 10000 });
}

try {
  // The org admin: the directory, then the rules that use it.
  const admin = await person('org_admin');
  const a = admin.page;
  await a.click('a[data-section=admin]');
  await a.waitForURL(`${base}/cabinet/admin/staff`);
  assert.equal(await a.locator('h2').first().textContent(), 'Сотрудники и роли');
  await a.fill('#staff-subject', 'sidorov-p');
  await a.fill('#staff-name', 'Сидоров Пётр');
  await a.fill('#staff-email', 'sidorov@kcioko.example');
  await a.check('input[name=roles][value=executor]');
  await a.check('input[name=roles][value=approver]');
  await a.click('form[data-form=staff] button[type=submit]');
  await saved(a);
  const row = a.locator('tr[data-subject=sidorov-p]');
  assert.equal(await row.locator('th').textContent(), 'Сидоров Пётр');
  assert.equal(await row.locator('.roles').textContent(), 'Исполнитель, Согласующий');
  assert.equal(await row.locator('.state').textContent(), 'Работает');
  await accessible(a, 'staff');
  await a.screenshot({ path: `${shots}/admin-staff.png`, fullPage: true });
  step('the admin added an executor with two roles');

  await a.click('nav.admin-sections a:text-is("Автоправила")');
  await a.waitForURL(`${base}/cabinet/admin/rules`);
  await a.selectOption('#rule-fact', 'education.e-diary.access');
  await a.fill('#rule-keywords', 'дневник, пароль');
  await a.selectOption('#rule-target', org);
  await a.selectOption('#rule-executor', 'sidorov-p');
  await a.click('form[data-form=rule] button[type=submit]');
  await saved(a);
  const rule = a.locator('#rules tbody tr').filter({ hasText: 'дневник, пароль' });
  assert.equal(await rule.locator('.executor').textContent(), 'Сидоров Пётр');
  await accessible(a, 'auto-rules');
  await a.screenshot({ path: `${shots}/admin-rules.png`, fullPage: true });
  step('the admin created an auto-rule to the executor');

  await a.click('nav.admin-sections a:text-is("Уведомления")');
  await a.waitForURL(`${base}/cabinet/admin/notifications`);
  await a.fill('#quiet-from', '22:00');
  await a.fill('#quiet-until', '08:00');
  await a.click('form[data-form=settings] button[type=submit]');
  await saved(a);
  assert.equal(await a.inputValue('#quiet-from'), '22:00');
  assert.equal(await a.inputValue('#quiet-until'), '08:00');
  await a.selectOption('#n-type', { label: 'Поступление сообщения в ЛКО' });
  await a.fill('#n-name', 'Новое сообщение № {number}');
  await a.fill('#n-addresses', 'pos@kcioko.example\nnot an address');
  await a.fill('#n-template', 'Поступило сообщение № {number} ({category}), срок — {deadline}.');
  await a.check('form[data-form=notification] input[name=roles][value=coordinator]');
  await a.click('form[data-form=notification] button[type=submit]');
  // A wrong address comes back beside its field, the rest of the form as typed.
  await a.locator('.field-error[data-field^=addresses]').waitFor({ timeout: 10000 });
  assert.equal(await a.inputValue('#n-name'), 'Новое сообщение № {number}');
  await a.fill('#n-addresses', 'pos@kcioko.example');
  await a.click('form[data-form=notification] button[type=submit]');
  await saved(a);
  const mailing = a.locator('#notifications tbody tr').filter({ hasText: 'Новое сообщение № {number}' });
  assert.match(await mailing.textContent(), /pos@kcioko\.example/);
  await accessible(a, 'notifications');
  await a.screenshot({ path: `${shots}/admin-notifications.png`, fullPage: true });
  step('the admin changed the quiet hours and added a mailing list');

  await a.click('nav.admin-sections a:text-is("Форма обращений на сайт")');
  await a.waitForURL(`${base}/cabinet/admin/widget`);
  assert.equal(
    await a.locator('#widget-script').textContent(),
    `<script src="${base}/widget.js" data-organization="${org}" async></script>`,
  );
  await a.selectOption('#widget-category', 'education');
  await a.click('form.filters button[type=submit]');
  await a.waitForURL(/category=education/);
  assert.match(await a.locator('#widget-iframe').textContent(), new RegExp(`/widget\\?organization=${org}&category=education"`));
  await accessible(a, 'widget');
  await a.screenshot({ path: `${shots}/admin-widget.png`, fullPage: true });
  step('the admin took the site form snippet for one category');

  await a.click('nav.admin-sections a:text-is("Сотрудники и роли")');
  await a.click('form[data-toggle=sidorov-p] button');
  await saved(a);
  assert.equal(await a.locator('tr[data-subject=sidorov-p] .state').textContent(), 'Отключён');
  step('the admin deactivated the executor');

  // The head: templates, with the preview filling placeholders as they type.
  const head = await person('head');
  const h = head.page;
  await h.click('a[data-section=admin]');
  await h.waitForURL(`${base}/cabinet/admin/staff`);
  assert.equal(await h.locator('form[data-form=staff]').count(), 0, 'the head reads the directory, the admin keeps it');
  await h.click('nav.admin-sections a:text-is("Шаблоны ответов")');
  await h.waitForURL(`${base}/cabinet/admin/templates`);
  await h.fill('#template-name', 'Доступ к дневнику');
  const body = h.locator('#template-body');
  await body.pressSequentially('Уважаемый(ая) {{applicant_name}}! По сообщению № {{message_number}} доступ предоставлен.', { delay: 5 });
  const preview = h.locator('#template-preview [data-preview=text]');
  await h.waitForFunction(
    () => document.querySelector('#template-preview [data-preview=text]')?.textContent.includes('№ 250000001'),
    null,
    { timeout: 10000 },
  );
  assert.equal(await preview.textContent(), 'Уважаемый(ая) Иванов Иван Иванович! По сообщению № 250000001 доступ предоставлен.');
  await accessible(h, 'templates with the preview');
  await h.screenshot({ path: `${shots}/admin-templates.png`, fullPage: true });
  step('the preview filled the placeholders');
  await body.pressSequentially(' {{applicant}}', { delay: 5 });
  const unknown = h.locator('#template-preview .field-error[data-field=body]');
  await unknown.waitFor({ timeout: 10000 });
  assert.match(await unknown.textContent(), /^Неизвестная подстановка \{\{applicant\}\}\./);
  // Saved as it is, the template is refused with the same error beside the text.
  await h.click('form[data-form=template] button.primary');
  await h.locator('.field-error#template-body-error').waitFor({ timeout: 10000 });
  assert.match(await h.locator('.field-error#template-body-error').textContent(), /\{\{applicant\}\}/);
  await h.screenshot({ path: `${shots}/admin-template-error.png`, fullPage: true });
  step('an unknown placeholder was named beside the text');
  await body.fill('Уважаемый(ая) {{applicant_name}}! По сообщению № {{message_number}} доступ предоставлен.');
  await h.click('form[data-form=template] button.primary');
  await saved(h);
  assert.equal(await h.locator('#templates li[data-template="Доступ к дневнику"]').count(), 1);
  step('the head saved the template');

  // An executor: no link, and every settings page refused by address.
  const executor = await person('executor');
  const e = executor.page;
  assert.equal(await e.locator('a[data-section=admin]').count(), 0, 'no settings link for an executor');
  for (const path of ['/cabinet/admin', '/cabinet/admin/staff', '/cabinet/admin/templates', '/cabinet/admin/notifications', '/cabinet/admin/rules', '/cabinet/admin/widget']) {
    const response = await e.goto(`${base}${path}`);
    assert.equal(response.status(), 403, path);
    assert.equal(await e.locator('h1').textContent(), 'Нет доступа');
  }
  const post = await executor.context.request.post(`${base}/cabinet/admin/staff`, {
    form: { csrf: await e.evaluate(() => document.querySelector('input[name=csrf]')?.value ?? ''), subject: 'x', full_name: 'y' },
    maxRedirects: 0,
  });
  assert.equal(post.status(), 403, 'an executor cannot post the directory either');
  step('an executor was refused the settings');

  // Forms without the CSRF token, or with a made-up one, are refused even for the admin.
  for (const form of [{ subject: 'intruder', full_name: 'Чужой' }, { subject: 'intruder', full_name: 'Чужой', csrf: 'f'.repeat(64) }]) {
    const refused = await admin.context.request.post(`${base}/cabinet/admin/staff`, { form, maxRedirects: 0 });
    assert.equal(refused.status(), 403);
    assert.match(await refused.text(), /Форма не принята/);
  }
  const refusedPreview = await head.context.request.post(`${base}/cabinet/admin/templates/preview`, {
    form: { body: '{{applicant_name}}' },
    maxRedirects: 0,
  });
  assert.equal(refusedPreview.status(), 403);
  step('forms without the CSRF token were refused');
  console.log('DONE');
} catch (error) {
  console.error(error);
  // What each person saw when it failed.
  let n = 0;
  for (const context of browser.contexts()) {
    for (const page of context.pages()) {
      await page.screenshot({ path: `${shots}/admin-failure-${n++}.png`, fullPage: true }).catch(() => {});
      console.error(`failure page ${n - 1}: ${page.url()}`);
    }
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
