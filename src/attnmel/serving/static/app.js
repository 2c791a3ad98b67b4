// The attnmel page: upload an image, show the probability and each attention map over the image.
// Plain DOM, no dependencies, nothing loaded from elsewhere. Text from the server is inserted with
// textContent, never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("upload-form");
  const input = $("file-input");
  const dropZone = $("drop-zone");
  const statusLine = $("status");
  const errorLine = $("error");
  const results = $("results");
  const maps = $("maps");
  const opacity = $("opacity");
  const opacityValue = $("opacity-value");
  let maxUploadBytes = 20e6;
  let busy = false;

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function formatNumber(value) {
    if (value === null || value === undefined) return "n/a";
    if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3);
    return String(value);
  }

  function showError(message) {
    errorLine.textContent = message;
    errorLine.hidden = false;
    statusLine.textContent = "";
  }

  function clearError() {
    errorLine.textContent = "";
    errorLine.hidden = true;
  }

  function showModel(model, notice) {
    if (!model) return;
    $("model-banner").textContent =
      "Answering: " + model.title + ", " + model.source + ". " + notice;
  }

  function applyOpacity() {
    const value = Number(opacity.value);
    opacityValue.textContent = value + " %";
    opacity.setAttribute("aria-valuetext", value + " percent heat map");
    for (const heat of maps.querySelectorAll("img.heat")) heat.style.opacity = String(value / 100);
  }

  function renderResult(body, fileName) {
    // an image unlike the fitting images gets no probability, class or set anywhere on the page:
    // the server sends them as null and says why in body.withheld
    const withheld = body.withheld || (body.out_of_distribution === true ? "out of distribution" : null);
    const probabilities = withheld ? null : body.probabilities;
    const positive = body.positive_class;
    $("probability").hidden = Boolean(withheld);
    $("probability-meter").hidden = Boolean(withheld);
    $("probability-table").hidden = Boolean(withheld);
    $("ood-warning").hidden = !withheld;
    $("ood-warning").textContent = withheld
      ? "Not answered: " + fileName + " does not look like the dermoscopy images this model was fitted on " +
        "(out-of-distribution score " + formatNumber(body.ood_score) + ", flagged above 1). No probability or " +
        "class is given for it."
      : "";
    $("probability").textContent = withheld ? "" :
      "P(" + positive + ") = " + probabilities[positive].toFixed(3) + " for " + fileName + " (predicted class: " +
      body.predicted_class + ")";
    $("probability-meter").value = withheld ? 0 : probabilities[positive];
    const notes = [];
    if (!withheld && body.refer) notes.push("Refer: " + body.refer_reasons.join("; ") + ".");
    if (body.threshold !== null && body.threshold !== undefined) {
      notes.push("Threshold " + body.threshold.toFixed(3) + " (" + body.threshold_rule + ").");
    }
    if (!withheld && body.prediction_set) notes.push("Prediction set {" + body.prediction_set.join(", ") + "}.");
    if (body.attention_warning) notes.push("Attention check: " + body.attention_warning + ".");
    if (body.trust_note) notes.push(body.trust_note + ".");
    if (body.ood_note) notes.push(body.ood_note + ".");
    $("trust-notes").textContent = notes.join(" ");
    $("trust-notes").hidden = notes.length === 0;
    const rows = $("probability-table").querySelector("tbody");
    rows.replaceChildren();
    for (const [name, value] of Object.entries(probabilities || {})) {
      const row = element("tr");
      row.append(element("th", name), element("td", value.toFixed(4)));
      row.firstChild.setAttribute("scope", "row");
      rows.append(row);
    }

    maps.replaceChildren();
    const size = body.model.image_size;
    const viewFigure = element("figure", null, "map");
    const viewImage = element("img", null, "view");
    viewImage.src = body.view_png;
    viewImage.alt = "The image as the model saw it (" + size + " x " + size + " px centre crop)";
    viewFigure.append(element("div", null, "stack"), element("figcaption", "What the model saw"));
    viewFigure.firstChild.append(viewImage);
    maps.append(viewFigure);
    for (const [layer, entry] of Object.entries(body.attention)) {
      const figure = element("figure", null, "map attention-map");
      figure.dataset.layer = layer;
      const stack = element("div", null, "stack");
      const base = element("img", null, "view");
      base.src = body.view_png;
      base.alt = "Attention of layer " + layer + " over the image";
      const heat = element("img", null, "heat");
      heat.src = entry.heatmap_png;
      heat.alt = "";
      heat.setAttribute("aria-hidden", "true");
      stack.append(base, heat);
      const range = entry.flat
        ? "flat: " + formatNumber(entry.min) + " to " + formatNumber(entry.max) + ", drawn in one colour"
        : "from " + formatNumber(entry.min) + " (blue) to " + formatNumber(entry.max) + " (red)";
      figure.append(stack, element("figcaption",
        "Attention at " + layer + " (" + entry.shape[0] + " x " + entry.shape[1] + " map, " + range + ")"));
      maps.append(figure);
    }
    if (body.figure_png) {
      $("figure-image").src = body.figure_png;
      $("figure-image").alt = "Figure: what the model saw and each map with its colour bar, for " + fileName;
      $("figure").hidden = false;
    }
    applyOpacity();
    results.hidden = false;
    statusLine.textContent = withheld
      ? "Result ready: not answered (out of distribution)."
      : "Result ready: P(" + positive + ") = " + probabilities[positive].toFixed(3) +
        (body.refer ? "; refer." : ".");
  }

  async function analyse(file) {
    if (!file) {
      showError("Choose an image first.");
      input.focus();
      return;
    }
    if (busy) return;
    clearError();
    if (file.size > maxUploadBytes) {
      showError(file.name + " is " + (file.size / 1e6).toFixed(1) + " MB; the limit is " + (maxUploadBytes / 1e6) + " MB.");
      return;
    }
    busy = true;
    form.setAttribute("aria-busy", "true");
    statusLine.textContent = "Analysing " + file.name + "...";
    try {
      const data = new FormData();
      data.append("file", file, file.name);
      const response = await fetch("/predict?figure=true", { method: "POST", body: data });
      const body = await response.json().catch(() => ({ error: "the server answered " + response.status }));
      if (!response.ok) {
        showError("Could not analyse " + file.name + ": " + (body.error || response.statusText));
        return;
      }
      showModel(body.model, body.notice);
      renderResult(body, file.name);
    } catch (exc) {
      showError("The service did not answer (" + exc + ").");
    } finally {
      busy = false;
      form.removeAttribute("aria-busy");
    }
  }

  function renderCard(card) {
    const root = $("model-card");
    root.replaceChildren();
    root.append(element("h3", card.title));
    const facts = element("dl", null, "facts");
    const model = card.model || {};
    const add = (term, value) => {
      if (value === null || value === undefined || (Array.isArray(value) && !value.length)) return;
      facts.append(element("dt", term), element("dd", Array.isArray(value) ? value.join(", ") : value));
    };
    add("model", model.name + (model.paper_row ? " (" + model.paper_row + ")" : ""));
    add("backbone", model.backbone);
    add("classes", (card.task || {}).class_names);
    add("attention layers", model.attention_layers);
    add("input", card.input && card.input.description);
    add("attnmel version", model.attnmel_version);
    root.append(facts);
    root.append(element("h4", "Intended use"), element("p", card.intended_use.primary));
    const section = card.metrics || {};
    const metrics = section.positive_class || {};
    const point = section.at_operating_point;
    root.append(element("h4", "Validation metrics"));
    const metricsTable = (caption, entries) => {
      const table = element("table", null, "metrics");
      table.append(element("caption", caption));
      const body = element("tbody");
      for (const [name, value] of entries) {
        const row = element("tr");
        const head = element("th", name.replaceAll("_", " "));
        head.setAttribute("scope", "row");
        row.append(head, element("td", value));
        body.append(row);
      }
      table.append(body);
      root.append(table);
    };
    if (Object.keys(metrics).length) {
      metricsTable("Validation split, epoch " + formatNumber(section.epoch) +
        (point ? ", metrics that need no threshold" : ""),
        Object.entries(metrics).filter(([name]) => name !== "threshold").map(([k, v]) => [k, formatNumber(v)]));
    } else {
      root.append(element("p", "No validation metrics recorded."));
    }
    if (point) {
      const rate = (value, interval) => formatNumber(value) + " [" + interval[0].toFixed(2) + ", " + interval[1].toFixed(2) + "]";
      metricsTable("At the threshold the model answers with: " + point.threshold.toFixed(4) + " (" + point.rule + "; " +
        point.images + " images, " + point.positives + " positive)", [
        ["sensitivity", rate(point.sensitivity, point.sensitivity_interval)],
        ["specificity", rate(point.specificity, point.specificity_interval)],
        ["accuracy", formatNumber(point.accuracy)], ["balanced accuracy", formatNumber(point.balanced_accuracy)],
        ["precision", formatNumber(point.precision)]]);
    }
    const half = section.at_threshold_half;
    if (half) {
      root.append(element("p", "Beside it only, at threshold " + formatNumber(half.threshold) +
        ", which the model does not answer with: " + Object.entries(half).filter(([k]) => k !== "threshold")
          .map(([k, v]) => k.replaceAll("_", " ") + " " + formatNumber(v)).join(", ") + ".", "small"));
    }
    const data = (card.training || {}).data;
    if (data) {
      root.append(element("h4", "Training data"));
      const list = element("ul");
      for (const split of ["train", "val"]) {
        if (!data[split]) continue;
        const classes = Object.entries(data[split].classes || {}).map(([k, v]) => k + " " + v).join(", ");
        list.append(element("li", split + ": " + data[split].images + " images (" + classes + ")"));
      }
      root.append(list);
    }
    root.append(element("h4", "Limitations"));
    const limits = element("ul");
    for (const item of card.limitations || []) limits.append(element("li", item));
    root.append(limits);
  }

  async function loadInfo() {
    try {
      const response = await fetch("/info");
      const info = await response.json();
      showModel(info.served_model, info.notice);
      renderCard(info);
      if (info.service && info.service.max_upload_bytes) {
        maxUploadBytes = info.service.max_upload_bytes;
        $("upload-limit").textContent = (maxUploadBytes / 1e6) + " MB";
      }
    } catch (exc) {
      $("model-card").textContent = "The model card could not be loaded (" + exc + ").";
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    analyse(input.files[0]);
  });
  input.addEventListener("change", () => analyse(input.files[0]));
  opacity.addEventListener("input", applyOpacity);
  for (const name of ["dragenter", "dragover"]) {
    dropZone.addEventListener(name, (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    dropZone.addEventListener(name, () => dropZone.classList.remove("dragging"));
  }
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) analyse(file);
  });
  applyOpacity();
  loadInfo();
})();
