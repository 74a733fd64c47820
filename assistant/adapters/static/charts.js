// Minimal SVG charts for the owners' console: bars with an optional line on a second axis.
// No dependencies, no network; text is set with textContent only.
"use strict";
(function (global) {
  const NS = "http://www.w3.org/2000/svg";
  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }
  // bars(container, {labels, bars, barLabel, line, lineLabel, lineMax, height})
  function bars(container, opts) {
    container.textContent = "";
    const labels = opts.labels || [], values = opts.bars || [], line = opts.line || null;
    const W = Math.max(320, container.clientWidth || 600), H = opts.height || 220;
    const pad = { l: 36, r: line ? 40 : 12, t: 12, b: 36 };
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", height: H, role: "img",
                            "aria-label": opts.title || "" }, container);
    const iw = W - pad.l - pad.r, ih = H - pad.t - pad.b;
    const top = niceMax(Math.max(0, ...values));
    const lineTop = opts.lineMax || niceMax(Math.max(0, ...(line || [0])));
    for (let i = 0; i <= 4; i++) {
      const y = pad.t + ih - (ih * i) / 4;
      el("line", { x1: pad.l, x2: W - pad.r, y1: y, y2: y, stroke: "#e4e7ec" }, svg);
      el("text", { x: pad.l - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#667085" }, svg)
        .textContent = String(Math.round((top * i) / 4 * 100) / 100);
      if (line) el("text", { x: W - pad.r + 4, y: y + 4, "font-size": 10, fill: "#b54708" }, svg)
        .textContent = opts.lineFormat ? opts.lineFormat((lineTop * i) / 4) : String((lineTop * i) / 4);
    }
    const n = Math.max(values.length, 1), slot = iw / n, bw = Math.max(2, Math.min(28, slot * 0.7));
    values.forEach((v, i) => {
      const h = (ih * v) / top, x = pad.l + slot * i + (slot - bw) / 2;
      const r = el("rect", { x, y: pad.t + ih - h, width: bw, height: Math.max(h, 0), fill: "#2357c6", rx: 2 }, svg);
      el("title", {}, r).textContent = `${labels[i]}: ${v} ${opts.barLabel || ""}`;
    });
    const every = Math.ceil(n / Math.max(1, Math.floor(iw / 56)));
    labels.forEach((label, i) => {
      if (i % every) return;
      el("text", { x: pad.l + slot * i + slot / 2, y: H - pad.b + 14, "text-anchor": "middle", "font-size": 10,
                   fill: "#667085" }, svg).textContent = String(label).slice(5);
    });
    if (line && line.length) {
      const pts = line.map((v, i) => `${pad.l + slot * i + slot / 2},${pad.t + ih - (ih * (v || 0)) / lineTop}`);
      el("polyline", { points: pts.join(" "), fill: "none", stroke: "#b54708", "stroke-width": 2 }, svg);
      line.forEach((v, i) => {
        const c = el("circle", { cx: pad.l + slot * i + slot / 2, cy: pad.t + ih - (ih * (v || 0)) / lineTop, r: 3,
                                 fill: "#b54708" }, svg);
        el("title", {}, c).textContent = `${labels[i]}: ${opts.lineFormat ? opts.lineFormat(v || 0) : v} ${opts.lineLabel || ""}`;
      });
    }
    const legend = el("g", {}, svg);
    el("rect", { x: pad.l, y: H - 14, width: 10, height: 10, fill: "#2357c6" }, legend);
    el("text", { x: pad.l + 14, y: H - 5, "font-size": 11, fill: "#1d2330" }, legend).textContent = opts.barLabel || "";
    if (line) {
      el("rect", { x: pad.l + 130, y: H - 14, width: 10, height: 10, fill: "#b54708" }, legend);
      el("text", { x: pad.l + 144, y: H - 5, "font-size": 11, fill: "#1d2330" }, legend).textContent = opts.lineLabel || "";
    }
    return svg;
  }
  // hbars(container, [{label, value}]): a ranked list as horizontal bars
  function hbars(container, rows, opts) {
    container.textContent = "";
    const W = Math.max(300, container.clientWidth || 600), row = 22, H = rows.length * row + 8;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", height: H, role: "img",
                            "aria-label": (opts && opts.title) || "" }, container);
    const top = Math.max(1, ...rows.map(r => r.value)), labelW = Math.min(260, W * 0.5);
    const fits = Math.max(4, Math.floor((labelW - 8) / 11));  // wide (CJK) characters of 11 px
    rows.forEach((r, i) => {
      const y = 4 + i * row;
      const label = el("text", { x: labelW - 6, y: y + 14, "text-anchor": "end", "font-size": 11, fill: "#1d2330" }, svg);
      label.textContent = r.label.length > fits ? "…" + r.label.slice(r.label.length - fits + 1) : r.label;
      el("title", {}, label).textContent = r.label;
      const w = ((W - labelW - 40) * r.value) / top;
      el("rect", { x: labelW, y: y + 3, width: Math.max(w, 1), height: row - 8, fill: "#2357c6", rx: 2 }, svg);
      el("text", { x: labelW + w + 4, y: y + 14, "font-size": 11, fill: "#667085" }, svg).textContent = String(r.value);
    });
    return svg;
  }
  global.RulebookCharts = { bars, hbars };
})(window);
