// Turns <div class="tool-tabs"> blocks into tabs: one tab per code block, named by
// the <p class="tab-label"> just before it. The chosen tool (pixi or make) is
// remembered and applied to every tab group in the book.
(function () {
    "use strict";
    var KEY = "gpt2-course-tool";

    function remembered() {
        try { return window.localStorage.getItem(KEY); } catch (e) { return null; }
    }
    function remember(label) {
        try { window.localStorage.setItem(KEY, label); } catch (e) { /* file:// may refuse */ }
    }

    function selectAll(label) {
        document.querySelectorAll(".tool-tabs.js-tabs").forEach(function (group) {
            if (group._select && group._labels.indexOf(label) !== -1) {
                group._select(label);
            }
        });
    }

    function setup(group) {
        var labels = [], panes = [];
        group.querySelectorAll(":scope > .tab-label").forEach(function (p) {
            var pane = p.nextElementSibling;
            if (pane && pane.tagName === "PRE") {
                labels.push(p.textContent.trim());
                panes.push(pane);
            }
        });
        if (panes.length < 2) {
            return;
        }
        var bar = document.createElement("div");
        bar.className = "tab-bar";
        bar.setAttribute("role", "tablist");
        var buttons = labels.map(function (label) {
            var b = document.createElement("button");
            b.type = "button";
            b.setAttribute("role", "tab");
            b.textContent = label;
            b.addEventListener("click", function () {
                remember(label);
                selectAll(label);
            });
            bar.appendChild(b);
            return b;
        });
        group.insertBefore(bar, group.firstChild);
        group._labels = labels;
        group._select = function (label) {
            labels.forEach(function (l, i) {
                var on = l === label;
                buttons[i].setAttribute("aria-selected", on ? "true" : "false");
                panes[i].hidden = !on;
            });
        };
        group.classList.add("js-tabs");
        var want = remembered();
        group._select(labels.indexOf(want) !== -1 ? want : labels[0]);
    }

    function init() {
        document.querySelectorAll(".tool-tabs").forEach(setup);
    }
    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", init);
    } else {
        init();
    }
})();
