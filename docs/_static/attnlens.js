// attnlens site: remember the reader's language (used by the root index.html), and keep the
// position on the page (#anchor) when switching language.
document.addEventListener("DOMContentLoaded", () => {
  for (const link of document.querySelectorAll("a.attnlens-lang[data-lang]")) {
    link.addEventListener("click", () => {
      try {
        window.localStorage.setItem("attnlens-lang", link.dataset.lang);
      } catch (e) {
        // storage may be unavailable (file://, private mode): the link works anyway
      }
      if (window.location.hash && !link.href.includes("#")) {
        link.href += window.location.hash;
      }
    });
  }
});
