/* Where the text of a table cell may wrap, on top of extra.css (which keeps inline code
   from breaking inside a word):
   - never right after the dashes of an option (--workers, -k, wrk -c32), which would read
     as two words;
   - in inline code, a long name (a dotted path, a snake_case metric, a file path, a call)
     between two of its parts, after a ".", "_", "/" or "(" that follows a letter or a
     digit and comes before another: else its column is as wide as the name and pushes the
     next columns out of sight.
   A <span> holds an option together and a <wbr> adds a place to wrap; neither adds text:
   what is copied or searched is the same. Runs on every page shown, instant navigation
   included. */
document$.subscribe(() => {
  const OPTION = /(?<=^|\s)-+[\p{L}\p{N}][\p{L}\p{N}-]*/gu;
  const BETWEEN_PARTS = /(?<=[\p{L}\p{N}][._\/(])(?=[\p{L}\p{N}"'\[{<])/u;
  const cells = document.querySelectorAll(
    ".md-typeset table:not([class]) :is(td, th):not([data-breaks])",
  );
  for (const cell of cells) {
    cell.dataset.breaks = "";
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    const texts = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.parentElement.closest("pre")) texts.push(node);
    }
    for (const text of texts) {
      const code = text.parentElement.closest("code") !== null;
      const pieces = document.createDocumentFragment();
      const add = (plain) => {
        (code ? plain.split(BETWEEN_PARTS) : [plain]).forEach((part, i) => {
          if (i > 0) pieces.append(document.createElement("wbr"));
          pieces.append(part);
        });
      };
      let done = 0;
      for (const option of text.data.matchAll(OPTION)) {
        add(text.data.slice(done, option.index));
        const whole = document.createElement("span");
        whole.style.whiteSpace = "nowrap";
        whole.textContent = option[0];
        pieces.append(whole);
        done = option.index + option[0].length;
      }
      add(text.data.slice(done));
      if (pieces.childNodes.length > 1) text.replaceWith(pieces);
    }
  }
});
