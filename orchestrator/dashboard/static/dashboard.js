// Progressive enhancement only: every page works without this file.
// A filter marked data-autosubmit applies as soon as it changes.
document.addEventListener("change", (event) => {
  const field = event.target;
  if (field instanceof HTMLSelectElement && field.dataset.autosubmit !== undefined && field.form) {
    field.form.requestSubmit();
  }
});
