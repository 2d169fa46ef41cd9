// Цифровой РОП: small enhancements; every page works without this script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const player = document.getElementById("player");

  // Click a transcript line or a quote: play from there.
  document.querySelectorAll("button.seek").forEach((button) => {
    button.addEventListener("click", () => {
      if (!player) return;
      player.currentTime = Number(button.dataset.start) || 0;
      player.play().catch(() => {}); // autoplay may be refused; the position is set anyway
    });
  });

  // Opened from a search hit (`?t=` seconds): the player starts where the words were said.
  const from = Number(new URLSearchParams(window.location.search).get("t"));
  if (player && from > 0) {
    const seek = () => { player.currentTime = from; };
    if (player.readyState >= 1) seek(); else player.addEventListener("loadedmetadata", seek, { once: true });
  }

  // Playback speed: the buttons set it, and this browser remembers it for every call.
  if (player) {
    const speeds = Array.from(document.querySelectorAll(".speeds button"));
    const setRate = (rate) => {
      player.defaultPlaybackRate = rate; // what loading the audio resets the rate to
      player.playbackRate = rate;
      speeds.forEach((button) => button.setAttribute("aria-pressed", String(Number(button.dataset.rate) === rate)));
    };
    const saved = Number(window.localStorage.getItem("rop.playbackRate"));
    if (speeds.some((button) => Number(button.dataset.rate) === saved)) setRate(saved);
    speeds.forEach((button) => button.addEventListener("click", () => {
      const rate = Number(button.dataset.rate);
      setRate(rate);
      window.localStorage.setItem("rop.playbackRate", String(rate));
    }));
  }

  // Highlight the line being played.
  if (player) {
    const lines = Array.from(document.querySelectorAll(".line"));
    player.addEventListener("timeupdate", () => {
      let current = null;
      for (const line of lines) {
        if (Number(line.querySelector("button").dataset.start) <= player.currentTime) current = line;
      }
      lines.forEach((line) => line.classList.toggle("playing", line === current));
    });
    // Keyboard: space pauses, arrows skip 5 s, when not typing in a field.
    document.addEventListener("keydown", (event) => {
      if (event.target.closest("input, textarea, select, audio") || event.ctrlKey || event.metaKey) return;
      if (event.key === " ") { event.preventDefault(); player.paused ? player.play() : player.pause(); }
      if (event.key === "ArrowLeft") player.currentTime = Math.max(0, player.currentTime - 5);
      if (event.key === "ArrowRight") player.currentTime += 5;
    });
  }

  // Copy buttons on the Connection page.
  document.querySelectorAll("button.copy-button").forEach((button) => {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      input.select();
      try { await navigator.clipboard.writeText(input.value); } catch { document.execCommand("copy"); }
      const label = button.textContent;
      button.textContent = "Скопировано";
      setTimeout(() => { button.textContent = label; }, 1500);
    });
  });

  // What deletes, or sends the CRM results again, asks first, saying what will happen.
  document.querySelectorAll("form.confirm").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  // "Add a stage / point / field": copy the last (blank) block with the next index.
  document.querySelectorAll("button.add").forEach((button) => {
    button.addEventListener("click", () => {
      const prefix = button.dataset.add; // e.g. "stages" or "stages.0.points"
      const list = document.querySelector(`.repeat[data-repeat="${prefix}"]`);
      const last = list.lastElementChild;
      const index = Number(last.dataset.index) + 1;
      const copy = last.cloneNode(true);
      const from = `${prefix}.${last.dataset.index}.`;
      const to = `${prefix}.${index}.`;
      copy.dataset.index = String(index);
      copy.querySelectorAll("[name], [id], [for], [data-add], [data-repeat], [aria-describedby]").forEach((el) => {
        for (const attr of ["name", "id", "for", "data-add", "data-repeat", "aria-describedby"]) {
          const value = el.getAttribute(attr);
          if (value) el.setAttribute(attr, value.split(from).join(to));
        }
        if (el.matches("input[type=text], input[type=number], input[type=url], textarea")) el.value = "";
      });
      copy.querySelectorAll(".error").forEach((el) => el.remove());
      list.appendChild(copy);
      copy.querySelector("input, textarea")?.focus();
    });
  });
});
