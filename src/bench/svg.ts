// Dependency-free SVG charts for the benchmark report: line (optionally log x or y), grouped bar
// and timeline (step series plus labelled vertical markers), with an optional provenance footer.
// Owns layout, tick choice and number labels; knows nothing about scenarios, only the Chart
// shape from results.ts. Every coordinate goes through `c()` so a NaN or Infinity in the data can
// never reach the markup.
import { FAMILY_TITLES, type Chart, type Family, type Series } from './results.js';

export const WIDTH = 720;
export const HEIGHT = 400;
const FAMILY_HEADER = 34;
const FOOTER_LINE = 13;
// Tableau 10: distinguishable in print and for the common colour-vision deficiencies.
export const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#e15759',
  '#76b7b2',
  '#59a14f',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
];
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';
const CHAR_W = 6.6; // rough width of a 12px sans-serif character, for legend and label layout
const MAX_POINT_MARKS = 150; // beyond this, circles turn a line into a smear

/** Escapes text for element content and attribute values. */
export function esc(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** A coordinate: one decimal, never NaN. */
function c(v: number): string {
  if (!Number.isFinite(v)) return '0';
  const r = Math.round(v * 10) / 10;
  return Object.is(r, -0) ? '0' : String(r);
}

/** Unit-less compact label: 950, 1.5k, 10k, 1.5M, 0.25; '' for non-finite. */
export function compact(v: number): string {
  if (!Number.isFinite(v)) return '';
  if (v === 0) return '0';
  const a = Math.abs(v);
  const sign = v < 0 ? '-' : '';
  for (const [div, suffix] of [
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ] as const) {
    // Round first so 999,999 becomes "1M" rather than "1000k".
    if (Number((a / div).toPrecision(3)) >= 1) return sign + trim((a / div).toPrecision(3)) + suffix;
  }
  return sign + trim(a.toPrecision(3));
}

function trim(s: string): string {
  if (s.includes('e')) return String(Number(s));
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

export interface Axis {
  min: number;
  max: number;
  ticks: number[];
  log: boolean;
}

/** Round-number ticks covering [min, max]; the domain widens to the outer ticks. */
export function niceTicks(min: number, max: number, count = 5): Axis {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return niceTicks(0, 1, count);
  if (min > max) [min, max] = [max, min];
  if (min === max) {
    // A single value still needs a span; centre it unless it is zero.
    const pad = min === 0 ? 1 : Math.abs(min) * 0.5;
    min = min >= 0 && min - pad < 0 ? 0 : min - pad;
    max = max + pad;
  }
  const rough = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(rough));
  const norm = rough / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const lo = Math.floor(min / step + 1e-9) * step;
  const hi = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let i = 0; lo + i * step <= hi + step * 1e-6 && i < 100; i++)
    ticks.push(Number((lo + i * step).toPrecision(12)));
  return { min: lo, max: hi, ticks, log: false };
}

/** Decade ticks for a log axis over positive [min, max]; 2 and 5 multiples when few decades. */
export function logTicks(min: number, max: number): Axis {
  if (!(min > 0) || !(max > 0) || !Number.isFinite(min) || !Number.isFinite(max)) return logTicks(1, 10);
  if (min > max) [min, max] = [max, min];
  let lo = Math.floor(Math.log10(min) + 1e-9);
  let hi = Math.ceil(Math.log10(max) - 1e-9);
  if (hi <= lo) hi = lo + 1;
  if (hi - lo > 12) lo = hi - 12;
  const ticks: number[] = [];
  const mults = hi - lo <= 2 ? [1, 2, 5] : [1];
  for (let e = lo; e <= hi; e++) {
    for (const m of mults) {
      const t = Number((m * 10 ** e).toPrecision(12));
      if (t <= 10 ** hi * (1 + 1e-9)) ticks.push(t);
    }
  }
  return { min: 10 ** lo, max: 10 ** hi, ticks, log: true };
}

/** Maps a data value onto [p0, p1] pixels. */
function scale(axis: Axis, p0: number, p1: number): (v: number) => number {
  if (axis.log) {
    const a = Math.log10(axis.min);
    const b = Math.log10(axis.max);
    return (v) => p0 + ((Math.log10(v) - a) / (b - a || 1)) * (p1 - p0);
  }
  return (v) => p0 + ((v - axis.min) / (axis.max - axis.min || 1)) * (p1 - p0);
}

function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${c(x)}" y="${c(y)}"${attrs ? ' ' + attrs : ''}>${esc(s)}</text>`;
}

function cleanPoints(s: Series, xLog: boolean): [number, number][] {
  return (s.points ?? []).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!xLog || x > 0));
}

interface Box {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

/** Legend rows under the title; returns the markup and the y where the plot may start. */
function legend(series: Series[], width: number, y0: number): { svg: string; bottom: number } {
  if (series.length === 0) return { svg: '', bottom: y0 };
  const parts: string[] = [];
  let x = 70;
  let y = y0;
  series.forEach((s, i) => {
    const w = 18 + s.name.length * CHAR_W + 16;
    if (x + w > width - 10 && x > 70) {
      x = 70;
      y += 16;
    }
    parts.push(`<rect x="${c(x)}" y="${c(y - 9)}" width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/>`);
    parts.push(text(x + 15, y, s.name));
    x += w;
  });
  return { svg: `<g class="legend">${parts.join('')}</g>`, bottom: y + 12 };
}

function yAxisMarkup(axis: Axis, box: Box, label: string, y: (v: number) => number): string {
  const out: string[] = [];
  for (const t of axis.ticks) {
    const py = y(t);
    out.push(`<line x1="${c(box.left)}" y1="${c(py)}" x2="${c(box.right)}" y2="${c(py)}" stroke="#e6e6e6"/>`);
    out.push(text(box.left - 6, py + 4, compact(t), 'text-anchor="end" fill="#444"'));
  }
  const cy = (box.top + box.bottom) / 2;
  out.push(text(16, cy, label, `text-anchor="middle" transform="rotate(-90 16 ${c(cy)})" fill="#222"`));
  return out.join('');
}

function frame(box: Box): string {
  return (
    `<line x1="${c(box.left)}" y1="${c(box.bottom)}" x2="${c(box.right)}" y2="${c(box.bottom)}" stroke="#333"/>` +
    `<line x1="${c(box.left)}" y1="${c(box.top)}" x2="${c(box.left)}" y2="${c(box.bottom)}" stroke="#333"/>`
  );
}

function noData(box: Box): string {
  return text(
    (box.left + box.right) / 2,
    (box.top + box.bottom) / 2,
    'no data',
    'text-anchor="middle" fill="#888" font-style="italic"',
  );
}

/** The y domain: always includes zero so bar heights and line levels read honestly. */
function yAxisFor(values: number[]): Axis {
  if (values.length === 0) return niceTicks(0, 1);
  return niceTicks(Math.min(0, ...values), Math.max(0, ...values));
}

/** A log y domain over the positive values (a log axis has no zero to include). */
function yLogAxisFor(values: number[]): Axis {
  const pos = values.filter((v) => v > 0);
  return pos.length === 0 ? logTicks(1, 10) : logTicks(Math.min(...pos), Math.max(...pos));
}

/** Line and timeline plots share axes; they differ in the path shape and the markers. */
function xyPlot(chart: Chart, box: Box, step: boolean): string {
  const xLog = !step && chart.xLog === true;
  const yLog = !step && chart.yLog === true;
  const data = chart.series.map((s) =>
    cleanPoints(s, xLog)
      .filter(([, py]) => !yLog || py > 0)
      .sort((a, b) => a[0] - b[0]),
  );
  const xs = data.flat().map((p) => p[0]);
  const markers = step ? (chart.markers ?? []).filter((m) => Number.isFinite(m.x)) : [];
  xs.push(...markers.map((m) => m.x));
  const ys = data.flat().map((p) => p[1]);
  const xAxis =
    xs.length === 0
      ? xLog
        ? logTicks(1, 10)
        : niceTicks(0, 1)
      : xLog
        ? logTicks(Math.min(...xs), Math.max(...xs))
        : niceTicks(Math.min(...xs), Math.max(...xs), 8);
  const yAxis = yLog ? yLogAxisFor(ys) : yAxisFor(ys);
  const x = scale(xAxis, box.left, box.right);
  const y = scale(yAxis, box.bottom, box.top);
  const out: string[] = [yAxisMarkup(yAxis, box, chart.yLabel + (yLog ? ' (log scale)' : ''), y)];
  for (const t of xAxis.ticks) {
    const px = x(t);
    out.push(`<line x1="${c(px)}" y1="${c(box.top)}" x2="${c(px)}" y2="${c(box.bottom)}" stroke="#f0f0f0"/>`);
    out.push(text(px, box.bottom + 16, compact(t), 'text-anchor="middle" fill="#444"'));
  }
  out.push(frame(box));
  if (ys.length === 0) out.push(noData(box));
  data.forEach((pts, i) => {
    const color = PALETTE[i % PALETTE.length];
    const name = esc(chart.series[i].name);
    if (pts.length > 1) {
      let d = `M${c(x(pts[0][0]))} ${c(y(pts[0][1]))}`;
      for (let k = 1; k < pts.length; k++) {
        // Step-after: a timeline sample holds until the next one, which is how bucketed rates read.
        d += step ? ` H${c(x(pts[k][0]))} V${c(y(pts[k][1]))}` : ` L${c(x(pts[k][0]))} ${c(y(pts[k][1]))}`;
      }
      out.push(
        `<path d="${d}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"><title>${name}</title></path>`,
      );
    }
    // Timelines are dense samples where dots add clutter, so only a lone sample gets one.
    if (step ? pts.length === 1 : pts.length <= MAX_POINT_MARKS) {
      for (const [px, py] of pts) {
        out.push(
          `<circle cx="${c(x(px))}" cy="${c(y(py))}" r="3" fill="${color}"><title>${name}: ${esc(compact(px))}, ${esc(compact(py))}</title></circle>`,
        );
      }
    }
  });
  markers.forEach((m, i) => {
    const px = x(m.x);
    // Stagger labels over three rows so markers close in time do not print over each other.
    const ly = box.top + 12 + (i % 3) * 13;
    const right = px > box.left + (box.right - box.left) * 0.7;
    out.push(
      `<line x1="${c(px)}" y1="${c(box.top)}" x2="${c(px)}" y2="${c(box.bottom)}" stroke="#555" stroke-dasharray="4 3"/>`,
    );
    out.push(
      text(right ? px - 4 : px + 4, ly, m.label, `text-anchor="${right ? 'end' : 'start'}" fill="#333" font-size="11"`),
    );
  });
  return out.join('');
}

/** Category names too wide for their group are drawn slanted (and need a deeper bottom margin). */
function rotateCategories(cats: string[], box: Pick<Box, 'left' | 'right'>): boolean {
  const groupW = (box.right - box.left) / Math.max(1, cats.length);
  return cats.some((s) => s.length * CHAR_W > groupW - 4);
}

/** Bar data as [category index, value], and the category names (indices past the named ones
 *  are shown by number rather than dropped). */
function barData(chart: Chart): { cats: string[]; data: [number, number][][] } {
  const cats = [...(chart.categories ?? [])];
  const data = chart.series.map((s) =>
    cleanPoints(s, false)
      .map(([i, v]) => [Math.round(i), v] as [number, number])
      .filter(([i]) => i >= 0 && i < 1000),
  );
  const maxIdx = Math.max(-1, ...data.flat().map((p) => p[0]));
  while (cats.length <= maxIdx) cats.push(String(cats.length));
  return { cats, data };
}

function barPlot(chart: Chart, box: Box): string {
  const { cats, data } = barData(chart);
  const ys = data.flat().map((p) => p[1]);
  const yAxis = yAxisFor(ys);
  const y = scale(yAxis, box.bottom, box.top);
  const out: string[] = [yAxisMarkup(yAxis, box, chart.yLabel, y)];
  const n = Math.max(1, cats.length);
  const groupW = (box.right - box.left) / n;
  const nSeries = Math.max(1, chart.series.length);
  const barW = (groupW * 0.8) / nSeries;
  const rotate = rotateCategories(cats, box);
  cats.forEach((name, i) => {
    const cx = box.left + groupW * (i + 0.5);
    out.push(
      rotate
        ? text(
            cx,
            box.bottom + 14,
            name,
            `text-anchor="end" transform="rotate(-30 ${c(cx)} ${c(box.bottom + 14)})" fill="#444"`,
          )
        : text(cx, box.bottom + 16, name, 'text-anchor="middle" fill="#444"'),
    );
  });
  const y0 = y(Math.max(yAxis.min, Math.min(0, yAxis.max)));
  data.forEach((pts, s) => {
    const color = PALETTE[s % PALETTE.length];
    for (const [i, v] of pts) {
      const bx = box.left + groupW * i + groupW * 0.1 + barW * s;
      const by = y(v);
      const top = Math.min(by, y0);
      out.push(
        `<rect x="${c(bx)}" y="${c(top)}" width="${c(Math.max(1, barW - 1))}" height="${c(Math.abs(y0 - by))}" fill="${color}">` +
          `<title>${esc(chart.series[s].name)} / ${esc(cats[i])}: ${esc(compact(v))}</title></rect>`,
      );
      if (barW >= 22)
        out.push(text(bx + barW / 2, top - 3, compact(v), 'text-anchor="middle" fill="#333" font-size="10"'));
    }
  });
  out.push(frame(box));
  if (ys.length === 0) out.push(noData(box));
  return out.join('');
}

/** One chart's markup inside a WIDTH x HEIGHT panel at the origin (no <svg> wrapper). */
function panel(chart: Chart): string {
  const series = chart.series ?? [];
  const safe: Chart = { ...chart, series };
  const head = text(WIDTH / 2, 22, chart.title, 'text-anchor="middle" font-size="15" font-weight="600" fill="#111"');
  const leg = legend(series, WIDTH, 42);
  const left = 70;
  const right = WIDTH - 28;
  const cats = chart.kind === 'bar' ? barData(chart).cats : [];
  // Slanted (30°) category names need their height below the axis, up to a third of the panel.
  const slanted = chart.kind === 'bar' && rotateCategories(cats, { left, right });
  const longest = Math.max(0, ...cats.map((s) => s.length));
  const bottomPad = slanted ? Math.min(HEIGHT / 3, 40 + longest * CHAR_W * 0.5) : 48;
  const box: Box = { left, right, top: Math.max(leg.bottom + 8, 40), bottom: HEIGHT - bottomPad };
  const body = chart.kind === 'bar' ? barPlot(safe, box) : xyPlot(safe, box, chart.kind === 'timeline');
  const xl = text(
    (box.left + box.right) / 2,
    HEIGHT - 8,
    chart.xLabel + (chart.xLog && chart.kind === 'line' ? ' (log scale)' : ''),
    'text-anchor="middle" fill="#222"',
  );
  return head + leg.svg + body + xl;
}

function svgOpen(height: number, title: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${c(height)}" viewBox="0 0 ${WIDTH} ${c(height)}" ${FONT} font-size="12">` +
    `<title>${esc(title)}</title><rect width="100%" height="100%" fill="#fff"/>`
  );
}

/** The provenance lines under the charts, so an image copied out of the report keeps its source. */
function footer(lines: string[], y: number): string {
  const t = lines.map((l, i) => text(WIDTH / 2, y + 12 + i * FOOTER_LINE, l, 'text-anchor="middle"')).join('');
  return `<g class="provenance" fill="#666" font-size="10">${t}</g>`;
}

const footerHeight = (lines: string[]) => (lines.length ? 6 + lines.length * FOOTER_LINE : 0);

/** A standalone SVG document for one chart, with optional provenance footer lines. */
export function renderChart(chart: Chart, footerLines: string[] = []): string {
  const height = HEIGHT + footerHeight(footerLines);
  return `${svgOpen(height, chart.title)}${panel(chart)}${footerLines.length ? footer(footerLines, HEIGHT) : ''}</svg>\n`;
}

/** One SVG document with a family's charts stacked vertically under the family title. */
export function renderFamily(family: Family, charts: Chart[], footerLines: string[] = []): string {
  const title = FAMILY_TITLES[family] ?? family;
  const plots = FAMILY_HEADER + Math.max(1, charts.length) * HEIGHT;
  const height = plots + footerHeight(footerLines);
  const parts = [
    svgOpen(height, title),
    text(WIDTH / 2, 24, title, 'text-anchor="middle" font-size="16" font-weight="700" fill="#000"'),
  ];
  if (charts.length === 0)
    parts.push(text(WIDTH / 2, FAMILY_HEADER + HEIGHT / 2, 'no charts', 'text-anchor="middle" fill="#888"'));
  charts.forEach((ch, i) => {
    const top = FAMILY_HEADER + i * HEIGHT;
    if (i > 0) parts.push(`<line x1="10" y1="${c(top)}" x2="${WIDTH - 10}" y2="${c(top)}" stroke="#ddd"/>`);
    parts.push(`<g transform="translate(0 ${c(top)})">${panel(ch)}</g>`);
  });
  if (footerLines.length) parts.push(footer(footerLines, plots));
  parts.push('</svg>\n');
  return parts.join('');
}
