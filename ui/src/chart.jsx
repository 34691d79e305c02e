// Charts per day (uPlot): one line per group (model, key, session). Clicking a day calls
// onPick(dayStartMs).
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const PALETTE = ['#3b82f6', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6', '#14b8a6', '#ec4899', '#64748b'];

/**
 * days: ascending day starts (seconds for uPlot); groups: [{label, values: [..per day]}].
 */
export function DayChart({ title, days, groups, format, onPick, testId }) {
  const host = useRef(null);
  useEffect(() => {
    if (!host.current) return undefined;
    const width = Math.max(240, host.current.clientWidth || 640);
    const series = [
      { label: 'Day (UTC)', value: (u, v) => (v === null || v === undefined ? '–' : new Date(v * 1000).toISOString().slice(0, 10)) },
      ...groups.map((g, i) => ({
        label: g.label,
        stroke: PALETTE[i % PALETTE.length],
        fill: PALETTE[i % PALETTE.length] + '22',
        width: 2,
        points: { show: true, size: 6 },
        value: (u, v) => (v === null || v === undefined ? '–' : format(v)),
      })),
    ];
    const data = [days, ...groups.map((g) => g.values)];
    const opts = {
      width,
      height: 240,
      series,
      // Days are UTC days: the axis and the legend show them in UTC, not in the browser's zone.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      scales: { x: { time: true, range: (u, min, max) => [min - 43200, max + 43200] } },
      // Wide enough for "0.000080" and "1,234.56" (70 px cut the first digit off).
      axes: [{}, { values: (u, vals) => vals.map((v) => format(v)), size: 84 }],
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
    };
    const plot = new uPlot(opts, data, host.current);
    const click = () => {
      const idx = plot.cursor.idx;
      if (idx !== null && idx !== undefined && onPick) onPick(days[idx] * 1000);
    };
    plot.over.addEventListener('click', click);
    return () => {
      plot.over.removeEventListener('click', click);
      plot.destroy();
    };
  }, [days, groups]);
  return (
    <figure class="chart" data-testid={testId}>
      <figcaption>{title}</figcaption>
      <div ref={host} />
    </figure>
  );
}

/**
 * Turns grouped report rows (group_by=day,<dim>) into chart input: every day of [start, end) and
 * one series per value of `dim` (at most 7, the rest summed as "other"), labelled `name(value)`.
 */
export function toSeries(rows, dim, metric, startMs, endMs, name = (k) => k) {
  const DAY = 86400000;
  const days = [];
  for (let d = startMs - (startMs % DAY); d < endMs; d += DAY) days.push(d);
  const totals = new Map();
  for (const r of rows) {
    const k = r[dim] ?? '(none)';
    totals.set(k, (totals.get(k) || 0) + Number(r[metric] || 0));
  }
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([k]) => k);
  const keep = new Set(ranked.slice(0, 7));
  const labels = ranked.slice(0, 7);
  if (ranked.length > 7) labels.push('other');
  const index = new Map(days.map((d, i) => [d, i]));
  const groups = labels.map((label) => ({ label, values: days.map(() => 0) }));
  for (const r of rows) {
    const i = index.get(Number(r.period_start));
    if (i === undefined) continue;
    const k = r[dim] ?? '(none)';
    const gi = keep.has(k) ? labels.indexOf(k) : labels.length - 1;
    groups[gi].values[i] += Number(r[metric] || 0);
  }
  for (const g of groups) if (g.label !== 'other') g.label = name(g.label);
  return { days: days.map((d) => d / 1000), groups };
}
