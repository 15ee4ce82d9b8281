// Overview graph: Chart.js (vendored, see vendor/) fed from /api/rates every 5 s.
(function () {
  "use strict";
  const canvas = document.getElementById("rates");
  if (!canvas || typeof Chart === "undefined") { return; }
  const chart = new Chart(canvas, {
    type: "line",
    data: { labels: [], datasets: [
      { label: "in (msg/s)", data: [], borderColor: "#3461d1", tension: 0.2, pointRadius: 0 },
      { label: "out (msg/s)", data: [], borderColor: "#11763a", tension: 0.2, pointRadius: 0 },
    ] },
    options: { animation: false, scales: { y: { beginAtZero: true } } },
  });
  async function refresh() {
    try {
      const resp = await fetch("/api/rates", { credentials: "same-origin" });
      if (!resp.ok) { return; }
      const points = await resp.json();
      chart.data.labels = points.map((p) => new Date(p.at * 1000).toLocaleTimeString());
      chart.data.datasets[0].data = points.map((p) => p.in);
      chart.data.datasets[1].data = points.map((p) => p.out);
      chart.update();
      canvas.dataset.points = String(points.length);
    } catch (err) {
      // The broker is restarting: the next round tries again.
    }
  }
  refresh();
  setInterval(refresh, 5000);
})();
