// Debian's Firefox ESR, driven over WebDriver BiDi by puppeteer-core (never a downloaded browser):
// opens a page, waits until a condition holds in it, prints what an expression gives, as JSON.
//
//   node firefox.mjs '{"url": "...", "until": "JS expression", "result": "JS expression",
//                      "timeoutMs": 30000, "prefs": {...}, "press": {"selector": "#stage", "keys": ["KeyQ"]}}'
//
// Firefox runs with its default preferences but for those the caller names (each test says why).
import puppeteer from "puppeteer-core";

const FIREFOX = "/usr/bin/firefox-esr";
const job = JSON.parse(process.argv[2]);
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: FIREFOX,
  headless: true,
  extraPrefsFirefox: job.prefs ?? {},
});
try {
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (message) => logs.push(message.text()));
  await page.goto(job.url);
  try {
    await page.waitForFunction(job.until, { timeout: job.timeoutMs ?? 30000, polling: 100 });
  } catch (error) {
    const state = await page.evaluate(job.result).catch((e) => String(e));
    console.log(JSON.stringify({ ok: false, error: String(error), result: state, logs }));
    process.exitCode = 1;
  }
  if (process.exitCode !== 1) {
    // then, where the job says so, keys pressed in the element it names (focused first)
    if (job.press) {
      await page.focus(job.press.selector);
      for (const key of job.press.keys) await page.keyboard.press(key);
    }
    console.log(JSON.stringify({ ok: true, result: await page.evaluate(job.result), logs }));
  }
} finally {
  await browser.close();
}
