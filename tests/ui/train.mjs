#!/usr/bin/env node
// Drives the train-classifier site of a running `host serve` in headless Chromium, as a user of
// Nitric's tutorial would: type the dataset, click "Train Model", watch the statuses up to the
// final one.
//
//   node tests/ui/train.mjs BASE_URL DATASET SCREENSHOT_PATH
//
// Prints a JSON summary ({"statuses": [...], "id": "..."}) on success; exits 1 naming the failed
// step otherwise. Chromium: $CHROMIUM, else /usr/bin/chromium.

import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { chromium } from 'playwright-core';

const [base, dataset, screenshot] = process.argv.slice(2);
if (!base || !dataset || !screenshot) {
  console.error('usage: node tests/ui/train.mjs BASE_URL DATASET SCREENSHOT_PATH');
  process.exit(2);
}
let step = 'launch Chromium';
const errors = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 800 } });
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('dialog', (d) => { errors.push(`dialog: ${d.message()}`); d.dismiss(); });
  step = 'open the site';
  await page.goto(`${base}/`);
  await page.getByRole('heading', { name: 'Train an image classifier' }).waitFor({ timeout: 10_000 });
  step = 'fill the dataset and click Train Model';
  await page.fill('#dataset', dataset);
  await page.getByRole('button', { name: 'Train Model' }).click();
  step = 'wait for "Model Trained!"';
  await page.locator('.status-message', { hasText: 'Model Trained!' }).waitFor({ timeout: 240_000 });
  const statuses = await page.locator('.status-message').allTextContents();
  const id = (await page.locator('.status-id').textContent()).match(/model-\d+/)[0];
  await mkdir(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
  console.log(JSON.stringify({ statuses, id }));
} catch (error) {
  console.error(`step "${step}" failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
