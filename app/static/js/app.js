// Gatehouse's only script besides htmx. No inline scripts anywhere, so the
// Content-Security-Policy can stay `script-src 'self'`.
(function () {
  "use strict";

  // Copy buttons: <button data-copy="text to copy">Copy</button>
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    event.preventDefault();
    var text = button.getAttribute("data-copy");
    var done = function () {
      // The label's nodes, not its text: a visually hidden part says what the button copies.
      var label = Array.prototype.slice.call(button.childNodes);
      button.textContent = "Copied";
      announce("Copied to the clipboard");
      setTimeout(function () { button.replaceChildren.apply(button, label); }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else {
      fallbackCopy(text);
      done();
    }
  });

  // Screen readers hear what a button did without moving focus (one polite live region per page).
  function announce(message) {
    var region = document.getElementById("announcer");
    if (!region) {
      region = document.createElement("div");
      region.id = "announcer";
      region.className = "visually-hidden";
      region.setAttribute("aria-live", "polite");
      document.body.appendChild(region);
    }
    region.textContent = "";
    setTimeout(function () { region.textContent = message; }, 50);
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* the text stays visible to copy by hand */ }
    document.body.removeChild(area);
  }

  // Dismiss a message: <div class="flash"><button data-dismiss>×</button></div>
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-dismiss]");
    if (button) button.parentElement.remove();
  });

  // The add-domain form: the inbox only matters for the email method (without JS it just stays shown).
  function syncDomainInbox(root) {
    var form = root && root.querySelector && (root.id === "domain-add-form" ? root : root.querySelector("#domain-add-form"));
    var inbox = form && form.querySelector("#domain-inbox");
    var method = form && form.querySelector("input[name=method]:checked");
    if (inbox && method) inbox.closest(".field").hidden = method.value !== "email";
  }
  document.addEventListener("change", function (event) {
    if (event.target.name === "method") syncDomainInbox(event.target.closest("form"));
  });
  document.addEventListener("DOMContentLoaded", function () { syncDomainInbox(document.body); });
  document.addEventListener("htmx:load", function (event) { syncDomainInbox(event.target); });

  // Confirm before destructive actions: <form data-confirm="Remove example.com?">
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
  }, true);

  // A session that ended answers htmx with 401 + HX-Redirect; htmx follows it.
  // Anything else that fails without a body gets a visible message.
  document.addEventListener("htmx:sendError", function () {
    var flash = document.getElementById("flash");
    if (flash) flash.innerHTML = '<div class="flash flash-error" role="alert">Gatehouse is unreachable. Check your connection; we will keep trying.</div>';
  });
})();
