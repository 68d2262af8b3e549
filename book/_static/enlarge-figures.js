// A click on a figure opens it alone at its full resolution (150 dpi: readable on a phone when enlarged).
document.addEventListener("DOMContentLoaded", () => {
  for (const img of document.querySelectorAll("div.cell_output img, figure img")) {
    img.style.cursor = "zoom-in";
    img.title = img.title || "Open the figure alone, at full size";
    img.addEventListener("click", () => window.open(img.src, "_blank"));
  }
});
