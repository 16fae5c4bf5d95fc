// rankfit pages: small vanilla JS, no build step. Each page's code runs when
// <body data-page="..."> names it. Every state-changing request carries the
// session's CSRF token (from <meta name="csrf-token">) in the X-CSRF-Token header.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  };
  const csrf = () => { const m = $('meta[name="csrf-token"]'); return m ? m.content : ""; };
  const SVGNS = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs) => {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };
  // Module paths by layer number, then module ("layer.2" before "layer.10").
  const byModule = (a, b) => a.localeCompare(b, "en", { numeric: true });
  const COLORS = ["#0b5fff", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7a8a"];
  const fmt = (v) => (v == null || !isFinite(v)) ? "–" : (Math.abs(v) >= 1000 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(3) : v.toPrecision(3));
  const duration = (s) => {
    if (s == null || !isFinite(s)) return "–";
    s = Math.round(s);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
    return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  };
  const bytes = (b) => b >= 1073741824 ? (b / 1073741824).toFixed(2) + " GiB" : (b / 1048576).toFixed(0) + " MiB";
  const PHASES = { training: "training", ablation_round: "ablation round", validating: "validating", evaluating: "final evaluation" };
  // The same line as the domain's Progress::line (the server renders it on first load).
  const progressLine = (p) => {
    let s = `${PHASES[p.phase] || p.phase} step ${p.step}/${p.total_steps} (${Math.round(100 * p.step / Math.max(1, p.total_steps))}%)`;
    if (p.done != null && p.of != null) s += ` · ${p.done}/${p.of}`;
    if (p.loss != null) s += ` · loss ${p.loss.toFixed(4)}`;
    if (p.rank_total != null) s += ` · rank ${p.rank_total}`;
    s += ` · ${duration(p.elapsed_seconds)} elapsed`;
    if (p.eta_seconds != null) s += ` · ETA ${duration(p.eta_seconds)}`;
    return s;
  };
  const errorMessage = (body, status) => (body && body.error && body.error.message) || ("request failed (HTTP " + status + ")");

  async function api(method, url, body) {
    const headers = { "X-CSRF-Token": csrf(), "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(url, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await resp.json(); } catch (_) { /* not JSON */ }
    if (!resp.ok) { const e = new Error(errorMessage(data, resp.status)); e.body = data; e.status = resp.status; throw e; }
    return data;
  }

  // ------------------------------------------------------------ charts
  // A line chart: series = [{label, color, points: [[x, y], ...]}]
  function lineChart(title, series) {
    const W = 560, H = 240, L = 56, R = 12, T = 10, B = 30;
    const pts = series.flatMap((s) => s.points);
    const box = el("figure", { class: "chart" });
    box.append(el("h3", { text: title }));
    if (!pts.length) return box;
    let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
    let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
    if (x1 === x0) { x1 = x0 + 1; }
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
    const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${series.map((s) => `${s.label} last ${fmt(s.points.length ? s.points[s.points.length - 1][1] : null)}`).join(", ")}` });
    for (let i = 0; i <= 4; i++) {
      const y = y0 + (y1 - y0) * i / 4;
      root.append(svg("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), stroke: "#d0d7de", "stroke-width": 1 }));
      const t = svg("text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end", "font-size": 11, fill: "#57606a" }); t.textContent = fmt(y); root.append(t);
    }
    for (let i = 0; i <= 4; i++) {
      const x = x0 + (x1 - x0) * i / 4;
      const t = svg("text", { x: sx(x), y: H - 10, "text-anchor": "middle", "font-size": 11, fill: "#57606a" }); t.textContent = Math.round(x); root.append(t);
    }
    const xl = svg("text", { x: W - R, y: H - 0, "text-anchor": "end", "font-size": 10, fill: "#57606a" }); xl.textContent = "step"; root.append(xl);
    series.forEach((s) => {
      if (!s.points.length) return;
      const sorted = s.points.slice().sort((a, b) => a[0] - b[0]);
      if (sorted.length === 1) {
        root.append(svg("circle", { cx: sx(sorted[0][0]), cy: sy(sorted[0][1]), r: 3.5, fill: s.color }));
      } else {
        root.append(svg("polyline", { points: sorted.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "), fill: "none", stroke: s.color, "stroke-width": 2, "stroke-linejoin": "round" }));
      }
    });
    box.append(root);
    const legend = el("ul", { class: "legend" });
    series.forEach((s) => { const i = el("i"); i.style.background = s.color; legend.append(el("li", {}, i, `${s.label} (${fmt(s.points.length ? s.points[s.points.length - 1][1] : null)})`)); });
    box.append(legend);
    return box;
  }

  // A heatmap: rows (module names) x cols (labels); values[r][c] is a rank or null.
  function heatmap(rows, cols, values, caption) {
    const max = Math.max(1, ...values.flat().filter((v) => v != null));
    const labelW = Math.min(300, 12 + 6.6 * Math.max(...rows.map((r) => r.length), 4));
    const cw = Math.max(6, Math.min(48, Math.floor(760 / Math.max(1, cols.length)))), ch = 16, top = 46;
    const W = labelW + cw * cols.length + 70, H = top + ch * rows.length + 8;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, role: "img", "aria-label": caption });
    rows.forEach((r, i) => {
      const t = svg("text", { x: labelW - 6, y: top + i * ch + 12, "text-anchor": "end", "font-size": 11, fill: "#1b1f24" }); t.textContent = r; root.append(t);
    });
    const every = Math.max(1, Math.ceil(cols.length / Math.floor((cw * cols.length) / 44 || 1)));
    cols.forEach((c, j) => {
      if (j % every === 0 || j === cols.length - 1) {
        const x = labelW + j * cw + cw / 2;
        const t = svg("text", { x, y: top - 6, "font-size": 10, fill: "#57606a", transform: `rotate(-35 ${x} ${top - 6})` }); t.textContent = c; root.append(t);
      }
    });
    values.forEach((row, i) => row.forEach((v, j) => {
      const a = v == null ? 0 : 0.08 + 0.92 * v / max;
      const rect = svg("rect", { x: labelW + j * cw, y: top + i * ch, width: cw - 1, height: ch - 1, fill: v == null ? "#f6f8fa" : `rgba(11,95,255,${a.toFixed(3)})` });
      const tt = svg("title"); tt.textContent = `${rows[i]} @ ${cols[j]}: rank ${v == null ? "–" : v}`; rect.append(tt); root.append(rect);
    }));
    const lx = labelW + cw * cols.length + 12;
    [[max, 1], [Math.round(max / 2), 0.5], [0, 0.08]].forEach(([v, a], k) => {
      root.append(svg("rect", { x: lx, y: top + k * 18, width: 14, height: 14, fill: `rgba(11,95,255,${a})` }));
      const t = svg("text", { x: lx + 18, y: top + k * 18 + 11, "font-size": 10, fill: "#57606a" }); t.textContent = `r=${v}`; root.append(t);
    });
    return root;
  }

  // ------------------------------------------------------------ datasets: upload with progress
  function renderReport(target, ds) {
    const r = ds.report || {};
    const box = el("div", { class: "card", id: "upload-report" });
    box.append(el("p", { class: "alert ok", role: "status" }, "Validated and stored: ", el("a", { href: "/datasets/" + ds.id, text: ds.name }), "."));
    box.append(el("h3", { text: "Validation report" }));
    const facts = el("dl", { class: "facts" });
    const fact = (k, v) => facts.append(el("div", {}, el("dt", { text: k }), el("dd", { text: String(v) })));
    fact("Rows", r.rows != null ? r.rows : ds.row_count);
    for (const [s, n] of Object.entries(r.rows_per_split || ds.splits || {})) fact(s, n);
    fact("Task", ds.task_family); fact("Format", ds.format);
    box.append(facts);
    const dist = Object.entries(r.label_distribution || {});
    if (dist.length) {
      const total = dist.reduce((a, [, n]) => a + n, 0) || 1;
      const tb = el("tbody");
      dist.forEach(([label, n]) => {
        const bar = el("span", { class: "bar" }); bar.style.width = (100 * n / total).toFixed(1) + "%";
        tb.append(el("tr", {}, el("td", { text: label }), el("td", { class: "num", text: String(n) }), el("td", {}, bar, ` ${(100 * n / total).toFixed(1)}%`)));
      });
      box.append(el("h3", { text: "Label distribution" }), el("table", { class: "bars" }, el("thead", {}, el("tr", {}, el("th", { text: "Label" }), el("th", { text: "Rows" }), el("th", { text: "Share" }))), tb));
    }
    if ((r.warnings || []).length) {
      const ul = el("ul", { class: "errors" });
      r.warnings.forEach((w) => ul.append(el("li", {}, el("span", { class: "line", text: "line " + w.line }), w.message)));
      box.append(el("h3", { text: "Warnings" }), ul);
    }
    if ((r.preview || []).length) {
      const tb = el("tbody");
      const target = (t) => (t && typeof t === "object") ? String(Object.values(t)[0]) : String(t);
      r.preview.forEach((p) => tb.append(el("tr", {}, el("td", { text: p.split }), el("td", { text: p.text_a }), el("td", { text: p.text_b || "" }), el("td", { text: target(p.target) }))));
      box.append(el("h3", { text: "Preview" }), el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, ...["Split", "Text", "Second text", "Target"].map((h) => el("th", { scope: "col", text: h })))), tb)));
    }
    box.append(el("p", {}, el("a", { class: "button", href: "/runs/new?dataset_id=" + ds.id, text: "Launch a run on it" }), " ", el("a", { class: "button secondary", href: "/datasets/" + ds.id, text: "Open the dataset" })));
    target.replaceChildren(box);
  }

  function renderUploadError(target, body, status) {
    const box = el("div", { class: "card", id: "upload-errors" });
    box.append(el("p", { class: "alert error", role: "alert", text: "The file was rejected: " + errorMessage(body, status) }));
    const errors = body && body.error && body.error.details && body.error.details.errors;
    if (errors && errors.length) {
      const ul = el("ul", { class: "errors", "aria-label": "Problems by line" });
      errors.forEach((e) => ul.append(el("li", {}, el("span", { class: "line", text: e.line ? "line " + e.line : "file" }), e.message)));
      box.append(el("h3", { text: `${errors.length} problem${errors.length === 1 ? "" : "s"}` }), ul);
    }
    target.replaceChildren(box);
  }

  function initUpload() {
    const form = $("#upload-form"); if (!form) return;
    const bar = $("#upload-bar"), pct = $("#upload-pct"), wrap = $("#upload-progress"), label = $("#upload-bar-label"), out = $("#upload-result"), btn = $("#upload-button");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const file = $("#ds-file").files[0];
      if (!file) { renderUploadError(out, { error: { message: "choose a file to upload" } }, 0); $("#ds-file").focus(); return; }
      const max = Number(form.dataset.maxBytes || 0);
      if (max && file.size > max) { renderUploadError(out, { error: { message: `the file is ${file.size} bytes; this server accepts at most ${max}` } }, 413); return; }
      const fd = new FormData();
      for (const input of form.querySelectorAll("input[name], select[name]")) {
        if (input.type === "file") continue;
        if (input.value.trim()) fd.append(input.name, input.value.trim());
      }
      fd.append("file", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/v1/datasets");
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.responseType = "json";
      wrap.hidden = false; bar.value = 0; pct.textContent = "0%"; label.textContent = "Uploading…"; btn.disabled = true; out.replaceChildren();
      xhr.upload.addEventListener("progress", (e) => {
        if (!e.lengthComputable) { bar.removeAttribute("value"); return; }
        const p = Math.round(100 * e.loaded / e.total); bar.value = p; pct.textContent = p + "%";
      });
      xhr.upload.addEventListener("load", () => { bar.value = 100; pct.textContent = "100%"; label.textContent = "Validating…"; });
      xhr.addEventListener("load", () => {
        btn.disabled = false;
        label.textContent = xhr.status === 201 ? "Uploaded" : "Upload finished";
        if (xhr.status === 201 && xhr.response && xhr.response.dataset) renderReport(out, xhr.response.dataset);
        else renderUploadError(out, xhr.response, xhr.status);
        out.focus && out.setAttribute("tabindex", "-1");
      });
      xhr.addEventListener("error", () => { btn.disabled = false; label.textContent = "Upload failed"; renderUploadError(out, { error: { message: "network error: the upload did not reach the server" } }, 0); });
      xhr.send(fd);
    });
  }

  // A GLUE folder (each file named by its path in the folder) or a zip, as one suite.
  function initGlueUpload() {
    const form = $("#glue-form"); if (!form) return;
    const out = $("#glue-result"), btn = $("#glue-button");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData();
      fd.append("name", $("#glue-name").value.trim() || "GLUE");
      fd.append("kind", "glue");
      const zip = $("#glue-zip").files[0];
      const files = Array.from($("#glue-folder").files || []).filter((f) => f.name.endsWith(".tsv"));
      if (zip) fd.append("file", zip, zip.name);
      else files.forEach((f) => fd.append("file", f, f.webkitRelativePath || f.name));
      if (!zip && !files.length) { out.replaceChildren(el("p", { class: "alert error", text: "choose the GLUE folder or a zip of it" })); return; }
      btn.disabled = true; out.replaceChildren(el("p", { class: "muted", text: "Uploading and validating…" }));
      try {
        const resp = await fetch("/api/v1/suites", { method: "POST", body: fd, credentials: "same-origin", headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" } });
        let data = null; try { data = await resp.json(); } catch (_) { /* not JSON */ }
        if (resp.status !== 201) {
          const box = el("div", { class: "alert error", role: "alert" }, el("p", { text: errorMessage(data, resp.status) }));
          const errors = data && data.error && data.error.details && data.error.details.errors;
          if (errors && errors.length) {
            const ul = el("ul", { class: "errors", "aria-label": "Problems by file and line" });
            errors.forEach((e) => ul.append(el("li", {}, el("span", { class: "line", text: `${e.file}${e.line ? " line " + e.line : ""}` }), " " + e.message)));
            box.append(ul);
          }
          out.replaceChildren(box);
        } else {
          const ul = el("ul", { id: "glue-datasets" });
          data.datasets.forEach((d) => ul.append(el("li", {}, el("a", { href: `/datasets/${d.id}`, text: d.name }), ` — ${d.task_family}, ranked by ${d.primary_metric}, ${d.row_count} rows`)));
          out.replaceChildren(el("p", { class: "alert ok", text: `Registered ${data.datasets.length} datasets.` }), ul);
        }
      } catch (e) { out.replaceChildren(el("p", { class: "alert error", text: "network error: " + e.message })); }
      btn.disabled = false;
    });
  }

  // ------------------------------------------------------------ launch form
  function initLaunch() {
    const form = $("#launch-form"); if (!form) return;
    const ds = $("#l-dataset"), model = $("#l-model"), targets = $("#l-targets"), errBox = $("#launch-error");
    const syncModels = () => {
      const fam = ds.selectedOptions[0] ? ds.selectedOptions[0].dataset.family : "";
      let firstOk = null;
      for (const o of model.options) { const ok = o.dataset.families.split(" ").includes(fam); o.disabled = !ok; if (ok && !firstOk) firstOk = o; }
      if (model.selectedOptions[0] && model.selectedOptions[0].disabled && firstOk) { firstOk.selected = true; targets.value = firstOk.dataset.targets; }
    };
    ds.addEventListener("change", syncModels);
    model.addEventListener("change", () => { targets.value = model.selectedOptions[0].dataset.targets; });
    syncModels();
    const request = () => {
      const training = {};
      for (const input of form.querySelectorAll("[data-kind]")) {
        const v = input.value.trim(); if (v === "") continue;
        const kind = input.dataset.kind;
        training[input.name] = kind === "int" ? parseInt(v, 10) : kind === "float" ? parseFloat(v) : v.split(",").map((s) => s.trim()).filter(Boolean);
      }
      const body = { dataset_id: ds.value, base_model: model.value, method: $("#l-method").value, budget: parseInt($("#l-budget").value, 10), name: $("#l-name").value.trim(), training };
      const seed = $("#l-seed").value.trim(); if (seed) body.seed = parseInt(seed, 10);
      return body;
    };
    // The live estimate: a dry run (nothing is created) a moment after the last change.
    const estText = $("#estimate-text"), estWarn = $("#estimate-warnings");
    let estTimer = null, estSeq = 0;
    const showEstimate = async () => {
      const seq = ++estSeq;
      try {
        const d = await api("POST", "/api/v1/runs?dry_run=true", request());
        if (seq !== estSeq) return;
        const e = d.estimate;
        const basis = e.basis.source === "measured" ? `measured on ${e.basis.runs} finished run${e.basis.runs === 1 ? "" : "s"} on ${e.device}` : `the reference machine; no ${model.value} run measured on ${e.device} yet`;
        estText.className = "";
        estText.textContent = `About ${duration(e.total_seconds)} (± ${Math.round(100 * e.error_band)}%): ${e.steps} steps over ${e.train_examples} training examples, ` +
          `~${Math.round(e.tokens_per_example)} tokens each; peak memory ~${bytes(e.peak_memory_bytes)}. Based on ${basis}.` +
          (d.estimator_accuracy ? ` Past estimates: median error ${Math.round(100 * d.estimator_accuracy.median_relative_error)}% over ${d.estimator_accuracy.runs} runs.` : "");
        estWarn.replaceChildren(...e.warnings.map((w) => el("li", { class: "alert warn", text: w })));
      } catch (err) {
        if (seq !== estSeq) return;
        estText.className = "muted";
        estText.textContent = "No estimate: " + err.message;
        estWarn.replaceChildren();
      }
    };
    const scheduleEstimate = () => { clearTimeout(estTimer); estTimer = setTimeout(showEstimate, 300); };
    form.addEventListener("input", scheduleEstimate);
    form.addEventListener("change", scheduleEstimate);
    showEstimate();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      errBox.hidden = true;
      const body = request();
      const btn = $("#launch-button"); btn.disabled = true;
      try {
        const data = await api("POST", "/api/v1/runs", body);
        location.assign("/runs/" + data.run.id);
      } catch (e) {
        btn.disabled = false;
        errBox.textContent = "The run was not created: " + e.message; errBox.hidden = false; errBox.focus && errBox.setAttribute("tabindex", "-1");
        const field = e.body && e.body.error && e.body.error.details && e.body.error.details.field;
        const name = field ? field.replace(/^(training|method)\./, "") : null;
        const input = name && form.querySelector(`[name="${CSS.escape(name)}"]`);
        if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
      }
    });
  }

  // ------------------------------------------------------------ run detail: SSE, curves, rank map, log
  function initRun() {
    const root = $("#run"); if (!root) return;
    const id = root.dataset.runId, wasTerminal = root.dataset.terminal === "true";
    const publish = $("#run-publish");
    if (publish) publish.addEventListener("click", async () => {
      const on = publish.dataset.published !== "true";
      try { await api(on ? "POST" : "DELETE", `/api/v1/runs/${id}/publish`); location.reload(); }
      catch (e) { $("#publish-state").textContent = e.message; }
    });
    const metrics = new Map(); // name -> Map(split -> [[step, value]])
    const snapshots = new Map(); // step -> ranks
    const log = $("#log"), badge = $("#run-status"), state = $("#stream-state");
    let pending = false;
    const redraw = () => { if (pending) return; pending = true; requestAnimationFrame(() => { pending = false; drawCurves(); drawRanks(); }); };
    function drawCurves() {
      const box = $("#curves");
      if (!metrics.size) return;
      $("#curves-empty").hidden = true;
      const names = [...metrics.keys()].sort((a, b) => (a === "loss" ? -1 : b === "loss" ? 1 : a.localeCompare(b)));
      box.replaceChildren(...names.map((name) => {
        const bySplit = metrics.get(name);
        const series = [...bySplit.entries()].map(([split, pts], i) => ({ label: split, color: COLORS[i % COLORS.length], points: pts }));
        return lineChart(name, series);
      }));
    }
    function drawRanks() {
      if (!snapshots.size) return;
      const steps = [...snapshots.keys()].sort((a, b) => a - b);
      const modules = [];
      for (const s of steps) for (const m of Object.keys(snapshots.get(s))) if (!modules.includes(m)) modules.push(m);
      modules.sort(byModule);
      const values = modules.map((m) => steps.map((s) => { const v = snapshots.get(s)[m]; return v == null ? null : Number(v); }));
      const last = snapshots.get(steps[steps.length - 1]);
      const total = Object.values(last).reduce((a, v) => a + Number(v), 0);
      $("#heatmap").replaceChildren(heatmap(modules, steps.map(String), values, `Rank map: ${modules.length} modules over ${steps.length} snapshots; total live rank at step ${steps[steps.length - 1]} is ${total}`),
        el("p", { class: "small muted", text: `Latest snapshot: step ${steps[steps.length - 1]}, total live rank ${total} across ${modules.length} modules.` }));
    }
    function addLog(kind, text, cls) {
      const li = el("li", { class: cls || "" }, el("strong", { text: kind + " " }), text);
      log.append(li);
      if (log.children.length > 2000) log.firstElementChild.remove();
      log.scrollTop = log.scrollHeight;
    }
    fetch(`/api/v1/runs/${id}/rank-map`, { credentials: "same-origin" }).then((r) => r.ok ? r.json() : null).then((d) => {
      if (d && d.snapshots) { for (const s of d.snapshots) snapshots.set(Number(s.step), s.ranks); redraw(); }
    }).catch(() => {});
    const es = new EventSource(`/api/v1/runs/${id}/events`);
    es.addEventListener("open", () => { state.textContent = "Live: following the run's event stream."; });
    es.addEventListener("metrics", (e) => {
      const d = JSON.parse(e.data);
      if (!metrics.has(d.name)) metrics.set(d.name, new Map());
      const m = metrics.get(d.name); if (!m.has(d.split)) m.set(d.split, []);
      const pts = m.get(d.split); const existing = pts.find((p) => p[0] === d.step);
      if (existing) existing[1] = d.value; else pts.push([d.step, d.value]);
      redraw();
    });
    es.addEventListener("ranks", (e) => { const d = JSON.parse(e.data); snapshots.set(Number(d.step), d.ranks); redraw(); addLog("ranks", `step ${d.step}: total ${d.total} / budget ${d.budget}`); });
    es.addEventListener("eval", (e) => { const d = JSON.parse(e.data); addLog("eval", `${d.split}: ` + Object.entries(d.metrics || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")); });
    es.addEventListener("progress", (e) => {
      const p = JSON.parse(e.data);
      if (badge.textContent !== "running") return;
      const bar = $("#run-progress"), line = $("#progress-line");
      $("#progress-section").hidden = false;
      bar.max = Math.max(1, p.total_steps); bar.value = p.step; bar.textContent = Math.round(100 * p.step / bar.max) + "%";
      line.textContent = progressLine(p); line.className = "small";
    });
    es.addEventListener("checkpoint", (e) => { const d = JSON.parse(e.data); addLog("checkpoint", `step ${d.step}` + (d.bytes ? ` (${d.bytes} bytes)` : "")); });
    es.addEventListener("log", (e) => { const d = JSON.parse(e.data); addLog("log", d.message || e.data); });
    es.addEventListener("status", (e) => {
      const d = JSON.parse(e.data);
      badge.textContent = d.status; badge.className = "badge " + d.status;
      addLog("status", d.status + (d.error ? ": " + d.error : d.reason ? ` (${d.reason})` : ""), d.status === "failed" ? "error" : "");
      if (d.error) { const b = $("#run-error"); b.textContent = d.error; b.hidden = false; }
      if (["succeeded", "failed", "cancelled"].includes(d.status)) {
        es.close(); state.textContent = `The run is ${d.status}; the stream has ended.`;
        const cf = $("#cancel-form"); if (cf) cf.remove();
        // Reload once so results, summary and downloads render from the server.
        if (!wasTerminal) setTimeout(() => location.reload(), 800);
      }
    });
    es.addEventListener("error", () => { if (es.readyState !== EventSource.CLOSED) state.textContent = "Reconnecting to the event stream…"; });
    const cf = $("#cancel-form");
    if (cf) cf.addEventListener("submit", (ev) => { if (!confirm("Cancel this run?")) ev.preventDefault(); });
  }

  // ------------------------------------------------------------ sortable tables
  function initSortable() {
    for (const table of document.querySelectorAll("table.sortable")) {
      const heads = [...table.tHead.rows[0].cells];
      heads.forEach((th, col) => {
        const btn = th.querySelector("button"); if (!btn) return;
        btn.addEventListener("click", () => {
          const asc = th.getAttribute("aria-sort") !== "ascending";
          heads.forEach((h) => h.removeAttribute("aria-sort"));
          th.setAttribute("aria-sort", asc ? "ascending" : "descending");
          const num = th.dataset.type === "num";
          const key = (tr) => { const c = tr.cells[col]; const v = c.dataset.sort != null ? c.dataset.sort : c.textContent.trim(); return num ? (v === "" ? -Infinity : parseFloat(v)) : v.toLowerCase(); };
          const rows = [...table.tBodies[0].rows];
          rows.sort((a, b) => { const x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
          table.tBodies[0].append(...rows);
        });
      });
    }
  }

  // ------------------------------------------------------------ compare: overlaid curves, final rank maps
  function initCompare() {
    const root = $("#compare"); if (!root) return;
    const runs = JSON.parse(root.dataset.series || "[]");
    const ranks = JSON.parse(root.dataset.ranks || "[]");
    Promise.all(runs.map((r) => fetch(`/api/v1/runs/${r.id}/metrics`, { credentials: "same-origin" }).then((x) => x.ok ? x.json() : { metrics: [] }).catch(() => ({ metrics: [] })))).then((all) => {
      const byKey = new Map(); // "split name" -> [{label, color, points}]
      all.forEach((d, i) => {
        const groups = new Map();
        for (const p of d.metrics || []) { const k = `${p.split} ${p.name}`; if (!groups.has(k)) groups.set(k, []); groups.get(k).push([p.step, p.value]); }
        for (const [k, pts] of groups) { if (!byKey.has(k)) byKey.set(k, []); byKey.get(k).push({ label: runs[i].label, color: COLORS[i % COLORS.length], points: pts }); }
      });
      const keys = [...byKey.keys()].sort((a, b) => (a === "train loss" ? -1 : b === "train loss" ? 1 : a.localeCompare(b)));
      $("#curves-empty").textContent = keys.length ? "" : "None of these runs has recorded metrics yet.";
      $("#curves").replaceChildren(...keys.map((k) => lineChart(k, byKey.get(k))));
    });
    const modules = [];
    for (const r of ranks) for (const m of Object.keys(r.ranks || {})) if (!modules.includes(m)) modules.push(m);
    modules.sort(byModule);
    if (!modules.length) { $("#heatmap").replaceChildren(el("p", { class: "muted", text: "No rank snapshots recorded for these runs." })); return; }
    const values = modules.map((m) => ranks.map((r) => (r.ranks && r.ranks[m] != null) ? Number(r.ranks[m]) : null));
    $("#heatmap").replaceChildren(heatmap(modules, ranks.map((r) => r.label), values, `Final rank maps of ${ranks.length} runs over ${modules.length} modules`));
  }

  // ------------------------------------------------------------ studies: launch form, live grid
  function initStudies() {
    const form = $("#study-form"); if (!form) return;
    const values = (sel) => [...$(sel).selectedOptions].map((o) => o.value);
    const spec = () => {
      const training = {};
      if ($("#s-epochs").value) training.epochs = parseFloat($("#s-epochs").value);
      if ($("#s-max-steps").value) training.max_steps = parseInt($("#s-max-steps").value, 10);
      return {
        name: $("#s-name").value, dataset_ids: values("#s-datasets"), methods: values("#s-methods"),
        budgets: values("#s-budgets").map((b) => parseInt(b, 10)), seeds: parseInt($("#s-seeds").value, 10) || 0, training,
      };
    };
    // The grid's size at once, then its estimate from a dry run (nothing is created).
    let timer = null, seq = 0;
    const size = () => {
      const n = values("#s-datasets").length * values("#s-methods").length * values("#s-budgets").length * (parseInt($("#s-seeds").value, 10) || 0);
      const out = $("#s-size");
      out.textContent = n ? `${n} runs will be queued.` : "";
      clearTimeout(timer);
      if (!n) return;
      timer = setTimeout(async () => {
        const mine = ++seq;
        const body = spec(); if (!body.name.trim()) body.name = "estimate";
        try {
          const d = await api("POST", "/api/v1/studies?dry_run=true", body);
          if (mine !== seq) return;
          const e = d.estimate;
          out.textContent = `${n} runs will be queued: about ${duration(e.total_seconds)} (± ${Math.round(100 * e.error_band)}%) one after another on one worker, peak memory ~${bytes(e.peak_memory_bytes)}.` +
            (e.warnings.length ? " " + e.warnings[0] : "");
        } catch (err) {
          if (mine === seq) out.textContent = `${n} runs will be queued (no estimate: ${err.message}).`;
        }
      }, 300);
    };
    form.addEventListener("change", size); form.addEventListener("input", size); size();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const err = $("#study-error"); err.hidden = true;
      const body = spec();
      $("#study-button").disabled = true;
      try {
        const d = await api("POST", "/api/v1/studies", body);
        location.href = "/studies/" + d.study.id;
      } catch (e) {
        err.textContent = e.message; err.hidden = false; $("#study-button").disabled = false;
      }
    });
  }

  function initStudy() {
    const root = $("#study"); if (!root) return;
    const id = root.dataset.study;
    initSortable();
    const cancel = $("#study-cancel");
    if (cancel) cancel.addEventListener("click", async () => {
      if (!confirm("Cancel every run of this study that has not finished?")) return;
      try { const d = await api("POST", `/api/v1/studies/${id}/cancel`); $("#study-live").textContent = `Cancelled ${d.cancelled} queued runs; ${d.stopping} running runs are stopping.`; cancel.disabled = true; }
      catch (e) { $("#study-live").textContent = e.message; }
    });
    const publish = $("#study-publish");
    if (publish) publish.addEventListener("click", async () => {
      const on = publish.dataset.published !== "true";
      try { await api(on ? "POST" : "DELETE", `/api/v1/studies/${id}/publish`); location.reload(); }
      catch (e) { $("#study-live").textContent = e.message; }
    });
    $("#study-extend").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {};
      const seeds = parseInt($("#x-seeds").value, 10); if (seeds) body.seeds = seeds;
      const budgets = $("#x-budgets").value.split(",").map((b) => parseInt(b, 10)).filter((b) => b > 0); if (budgets.length) body.budgets = budgets;
      try { const d = await api("POST", `/api/v1/studies/${id}/extend`, body); $("#extend-msg").textContent = `${d.runs_created} runs queued; reloading…`; setTimeout(() => location.reload(), 800); }
      catch (e) { $("#extend-msg").textContent = e.message; }
    });
    if (root.dataset.finished === "true") return;
    const es = new EventSource(`/api/v1/studies/${id}/events`);
    let reloadWhenDone = false;
    es.addEventListener("grid", (ev) => {
      const d = JSON.parse(ev.data);
      if (!d.progress) { $("#study-live").textContent = d.error || ""; return; }
      const p = d.progress;
      $("#study-progress").max = p.total; $("#study-progress").value = p.done;
      $("#study-count").textContent = `${p.done}/${p.total} runs finished (${p.total ? Math.floor(100 * p.done / p.total) : 0}%)`;
      $("#study-eta").textContent = p.eta_seconds == null ? "–" : (p.eta_seconds < 90 ? `${Math.round(p.eta_seconds)} s` : `${Math.round(p.eta_seconds / 60)} min`);
      $("#study-live").textContent = `${p.running} running, ${p.queued} queued, ${p.succeeded} succeeded, ${p.failed} failed, ${p.cancelled} cancelled`;
      for (const g of d.grid) {
        const row = document.querySelector(`#study-grid tr[data-cell="${g.dataset_id}|${g.method}|${g.budget}"]`); if (!row) continue;
        row.querySelector("td.runs").replaceChildren(...g.runs.flatMap((r) => [el("a", { class: `badge ${r.status}`, href: `/runs/${r.id}`, "data-run": r.id, title: `seed ${r.seed}: ${r.status}`, text: `s${r.seed} ${r.status}` }), " "]));
      }
      if (p.succeeded > 0) reloadWhenDone = true;
      if (d.finished) {
        es.close();
        $("#study-live").textContent += " · finished";
        if (reloadWhenDone) setTimeout(() => location.reload(), 500);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.body.dataset.page;
    if (page === "datasets") { initUpload(); initGlueUpload(); }
    if (page === "launch") initLaunch();
    if (page === "runs" && $("#run")) initRun();
    if (page === "leaderboard") initSortable();
    if (page === "compare") initCompare();
    if (page === "studies" && $("#study-form")) initStudies();
    if (page === "studies" && $("#study")) initStudy();
  });
})();
