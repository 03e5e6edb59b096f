import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
const [src, out, height] = [process.argv[2], process.argv[3], Number(process.argv[4] || 1400)];
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox'] });
const p = await b.newPage({ viewport: { width: 800, height: 800 } });
const data = readFileSync(src).toString('base64');
await p.setContent(`<body style="margin:0;background:#888"><img id=i src="data:image/png;base64,${data}"></body>`);
const { w, h } = await p.evaluate(() => ({ w: i.naturalWidth, h: i.naturalHeight }));
let n = 0;
for (let y = 0; y < h; y += height) {
  await p.setViewportSize({ width: w, height: Math.min(height, h - y) });
  await p.evaluate((y) => window.scrollTo(0, y), y);
  await p.screenshot({ path: `${out}-${n++}.png` });
}
console.log(w, h, n);
await b.close();
