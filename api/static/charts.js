/* Line charts on uPlot (vendored in /static/vendor/uplot), themed from the page's CSS variables. */
"use strict";

const charts = (() => {
  const PALETTE = ["#2f6fde", "#e4572e", "#29a36a", "#a259d9", "#d99a00", "#17a2b8",
                   "#c2185b", "#6d4c41", "#7cb342", "#5c6bc0"];
  const css = name => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const color = i => PALETTE[i % PALETTE.length];

  /**
   * Draw (or redraw) a line chart into `el`.
   * x: epochs; series: [{label, values (null = no point), color?, dash?}]; log: log-scale y.
   */
  function line(el, { x, series, yLabel = "", log = false, height = 240, percent = false }) {
    if (el._plot) { el._plot.destroy(); el._plot = null; }
    if (el._observer) { el._observer.disconnect(); el._observer = null; }
    el.innerHTML = "";
    if (!x.length || !series.length) {
      el.innerHTML = '<div class="empty">no epochs recorded yet</div>';
      return null;
    }
    const muted = css("--muted"), grid = css("--line");
    const axis = { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const fmt = v => v == null ? "–" : percent ? (100 * v).toFixed(2) + "%" :
      Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(4);
    const opts = {
      width: Math.max(el.clientWidth, 240), height,
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
      axes: [
        { ...axis, label: "epoch", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500],
          values: (u, ticks) => ticks.map(t => t != null && Number.isInteger(t) ? t : "") },
        { ...axis, label: yLabel, size: 64,
          values: (u, ticks) => ticks.map(t => t == null ? "" :  // log scales leave gaps as null
            percent ? (100 * t).toFixed(1) + "%" : +t.toPrecision(3)) },
      ],
      series: [
        { label: "epoch" },
        ...series.map((s, i) => ({
          label: s.label, stroke: s.color || color(i), width: 2, dash: s.dash,
          points: { show: x.length <= 30, size: 5 }, value: (u, v) => fmt(v),
        })),
      ],
      cursor: { drag: { x: false, y: false } },
    };
    const plot = new uPlot(opts, [x, ...series.map(s => s.values)], el);
    el._plot = plot;
    el._observer = new ResizeObserver(() => {
      const w = Math.max(el.clientWidth, 240);
      if (Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height });
    });
    el._observer.observe(el);
    return plot;
  }

  return { line, color };
})();
