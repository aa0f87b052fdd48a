//! The drawing as SVG: inline in the map page (each device linked to its card, and a
//! script that checks in the browser that no boxes overlap and every label fits), or as a
//! standalone `.svg` file (`monitor map --format svg`). Nothing is fetched from anywhere.

use std::fmt::Write as _;

use super::{
    layout::{self, BLOCK_HEAD, Layout, PAD, Rect, Route},
    model::{Drawing, GroupRole, Node, Shade, Side},
};
use crate::view::devmap::{markup::esc, model::Protection};

/// Where the SVG goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Inline in the map page: boxes link to the devices' cards.
    Page,
    /// A file of its own: a namespaced SVG document, tooltips instead of links.
    File,
}

const STYLE: &str = r#"
.dw text{font-family:"DejaVu Sans",Verdana,sans-serif;fill:#1d2733}
.dw .dw-legend{font-size:12px}
.dw .dw-coltitle{font-size:14px;font-weight:600;fill:#14212e}
.dw .dw-group{fill:#fff;stroke:#c3ced8}
.dw .dw-group.dw-outside{fill:#f6f7f9;stroke-dasharray:5 3}
.dw .dw-group.dw-discovered{fill:#fff8e6;stroke:#b26a00;stroke-dasharray:5 3}
.dw .dw-gtitle{font-size:13px;font-weight:600}
.dw .dw-block{fill:#f7f9fb;stroke:#dde3e9}
.dw .dw-btitle{font-size:11px;fill:#46535f}
.dw .dw-name{font-size:13px;font-weight:600}
.dw .dw-kind{font-size:11px;fill:#4c5967}
.dw .dw-p-enforced{fill:#d5efdb;stroke:#1e7b34}
.dw .dw-p-audited{fill:#fbe7c6;stroke:#b26a00}
.dw .dw-p-learning{fill:#d6e4f7;stroke:#1f5fb4}
.dw .dw-p-break-glass{fill:#ead9f7;stroke:#7b2cbf}
.dw .dw-p-not-enrolled{fill:#eef1f4;stroke:#8a96a3;stroke-dasharray:3 2}
.dw rect.dw-viol{stroke:#c62828;stroke-width:2.5;stroke-dasharray:none}
.dw rect.dw-spoofed{stroke:#111;stroke-width:3;stroke-dasharray:2 2}
.dw .dw-mark{fill:#c62828}
.dw .dw-mark-text{fill:#fff;font-size:11px;font-weight:700}
.dw .dw-spoof{fill:#111}
.dw .dw-edge{fill:none;stroke-opacity:.7}
.dw .dw-e-enforced{stroke:#1e7b34}.dw .dw-e-audited{stroke:#b26a00}.dw .dw-e-learning{stroke:#1f5fb4}
.dw .dw-e-break-glass{stroke:#7b2cbf}.dw .dw-e-not-enrolled{stroke:#8a96a3}
.dw .dw-e-viol{stroke:#c62828;stroke-dasharray:7 4;stroke-opacity:.9}
.dw a:hover rect,.dw a:focus rect{stroke-width:3}
"#;

/// In the page, right after the drawing: measures what the browser drew (every box
/// against the others of its level, inside its parent, every label within its width) and
/// says so on the `<svg>`: `data-layout` "ok" or "bad", `data-layout-problems`,
/// `data-boxes`, and `data-rendered-ms` (from the request until the drawing was laid out;
/// the cards below come after). Once the page is read, every link must lead to a card.
pub const CHECK_SCRIPT: &str = r##"
(function(){
  var svg=document.getElementById('drawing');
  if(!svg)return;
  var bad=[], levels={}, byName={}, all=svg.querySelectorAll('[data-box]');
  all.forEach(function(el){
    var b=el.getBBox(), r={x:b.x,y:b.y,r:b.x+b.width,b:b.y+b.height,el:el};
    (levels[el.dataset.box]=levels[el.dataset.box]||[]).push(r);
    if(el.dataset.name)byName[el.dataset.name]=r;
  });
  Object.keys(levels).forEach(function(level){
    var rs=levels[level].sort(function(a,b){return a.x-b.x;});
    for(var i=0;i<rs.length;i++)for(var j=i+1;j<rs.length&&rs[j].x<rs[i].r-0.5;j++){
      if(rs[j].y<rs[i].b-0.5&&rs[i].y<rs[j].b-0.5)
        bad.push(level+' '+rs[i].el.dataset.name+' overlaps '+rs[j].el.dataset.name);
    }
    rs.forEach(function(r){
      var p=r.el.dataset.parent&&byName[r.el.dataset.parent];
      if(r.el.dataset.parent&&(!p||r.x<p.x-0.5||r.y<p.y-0.5||r.r>p.r+0.5||r.b>p.b+0.5))
        bad.push(r.el.dataset.name+' is outside '+r.el.dataset.parent);
    });
  });
  svg.querySelectorAll('text[data-fit]').forEach(function(t){
    if(t.getComputedTextLength()>parseFloat(t.dataset.fit)+0.5)
      bad.push('label "'+t.textContent+'" is wider than its box');
  });
  function report(){
    svg.setAttribute('data-layout',bad.length?'bad':'ok');
    svg.setAttribute('data-layout-problems',bad.slice(0,20).join('; '));
  }
  svg.setAttribute('data-boxes',String(all.length));
  svg.setAttribute('data-rendered-ms',String(Math.round(performance.now())));
  report();
  document.addEventListener('DOMContentLoaded',function(){
    svg.querySelectorAll('a[href^="#"]').forEach(function(a){
      if(!document.getElementById(a.getAttribute('href').slice(1)))
        bad.push('link '+a.getAttribute('href')+' leads nowhere');
    });
    svg.setAttribute('data-links-checked','true');
    report();
  });
})();
"##;

/// The drawing of `drawing` as SVG for `target`.
pub fn svg(drawing: &Drawing, target: Target) -> String {
    let placed = layout::layout(drawing);
    let routes = layout::routes(drawing, &placed);
    let devices = drawing.nodes.iter().filter(|n| n.card.is_some()).count();
    let compact = placed.groups.iter().any(|g| g.compact);
    let mut out = String::with_capacity(1024 + 600 * drawing.nodes.len());
    if target == Target::File {
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    }
    let _ = write!(
        out,
        "<svg {}id=\"drawing\" class=\"dw\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"The architecture: {devices} devices by ward, the servers and services they use, baseline flows and violations\" data-devices=\"{devices}\" data-grouped=\"{compact}\">",
        if target == Target::File {
            "xmlns=\"http://www.w3.org/2000/svg\" "
        } else {
            ""
        },
        w = placed.width,
        h = placed.height,
    );
    let _ = write!(
        out,
        "<style>{STYLE}</style><rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fbfcfd\"/>",
        placed.width, placed.height
    );
    legend(&mut out);
    let max = routes.iter().map(|r| r.packets).max().unwrap_or(0);
    out.push_str("<g class=\"dw-edges\">");
    // Baseline flows first, violations on top of them.
    for route in routes.iter().filter(|r| !r.violation) {
        edge(&mut out, drawing, &placed, route, max);
    }
    for route in routes.iter().filter(|r| r.violation) {
        edge(&mut out, drawing, &placed, route, max);
    }
    out.push_str("</g>");
    for gi in 0..drawing.groups.len() {
        group(&mut out, drawing, &placed, gi, target);
    }
    out.push_str("</svg>");
    out
}

/// The legend and the columns' titles, above [`layout::TOP`].
fn legend(out: &mut String) {
    let mut x = 16;
    for shade in [
        Shade::Protected(Protection::Enforced),
        Shade::Protected(Protection::Audited),
        Shade::Protected(Protection::Learning),
        Shade::Protected(Protection::BreakGlass),
        Shade::Unenrolled,
    ] {
        let _ = write!(
            out,
            "<rect data-box=\"legend\" data-name=\"legend-{l}\" class=\"dw-p-{l}\" x=\"{x}\" y=\"10\" width=\"22\" height=\"14\" rx=\"3\"/><text class=\"dw-legend\" x=\"{}\" y=\"22\" data-fit=\"110\">{}</text>",
            x + 28,
            shade.label().replace('-', " "),
            l = shade.label(),
        );
        x += 150;
    }
    let marks: [(&str, &str); 4] = [
        (
            "<path class=\"dw-edge dw-e-enforced\" stroke-width=\"4\" d=\"M16,47 H40\"/>",
            "baseline flow: width by traffic",
        ),
        (
            "<path class=\"dw-edge dw-e-viol\" stroke-width=\"2\" d=\"M276,47 H300\"/>",
            "flow outside the baseline",
        ),
        (
            "<rect data-box=\"legend\" data-name=\"legend-viol\" class=\"dw-p-enforced dw-viol\" x=\"536\" y=\"40\" width=\"22\" height=\"14\" rx=\"3\"/>",
            "device with violations",
        ),
        (
            "<rect data-box=\"legend\" data-name=\"legend-spoofed\" class=\"dw-p-enforced dw-spoofed\" x=\"796\" y=\"40\" width=\"22\" height=\"14\" rx=\"3\"/>",
            "spoofed: address in use by another",
        ),
    ];
    for (i, (symbol, text)) in marks.iter().enumerate() {
        let _ = write!(
            out,
            "{symbol}<text class=\"dw-legend\" x=\"{}\" y=\"52\" data-fit=\"220\">{text}</text>",
            16 + 260 * i + 28
        );
    }
    let _ = write!(
        out,
        "<text class=\"dw-coltitle\" x=\"{}\" y=\"84\" data-fit=\"{}\">Wards and their devices</text><text class=\"dw-coltitle\" x=\"{}\" y=\"84\" data-fit=\"{}\">Servers and services they use</text>",
        layout::column_x(Side::Left),
        layout::COLUMN,
        layout::column_x(Side::Right),
        layout::COLUMN
    );
}

/// An anchor's name in `data-from`/`data-to`: a node's id, or "group/kind".
fn anchor_name(drawing: &Drawing, placed: &Layout, anchor: layout::Anchor) -> String {
    match anchor {
        layout::Anchor::Node(n) => drawing.nodes[n].id.clone(),
        layout::Anchor::Block(g, b) => format!(
            "{}/{}",
            drawing.groups[g].title, placed.groups[g].blocks[b].kind
        ),
    }
}

fn edge(out: &mut String, drawing: &Drawing, placed: &Layout, route: &Route, max: u64) {
    let curve = layout::curve(
        placed.anchor_rect(route.from),
        placed.anchor_side(route.from),
        placed.anchor_rect(route.to),
        placed.anchor_side(route.to),
    );
    let class = if route.violation {
        "viol"
    } else {
        route.shade.label()
    };
    let (from, to) = (
        anchor_name(drawing, placed, route.from),
        anchor_name(drawing, placed, route.to),
    );
    let services: Vec<&str> = route.services.iter().map(String::as_str).collect();
    let _ = write!(
        out,
        "<path class=\"dw-edge dw-e-{class}\" d=\"{}\" stroke-width=\"{}\" data-from=\"{}\" data-to=\"{}\" data-violation=\"{}\" data-packets=\"{}\"><title>{} → {}: {}; {} packets{}{}</title></path>",
        curve.path,
        layout::stroke_width(route.packets, max),
        esc(&from),
        esc(&to),
        route.violation,
        route.packets,
        esc(&from),
        esc(&to),
        esc(&services.join(", ")),
        route.packets,
        if route.edges > 1 {
            format!(" ({} flows)", route.edges)
        } else {
            String::new()
        },
        if route.violation {
            " outside the baseline"
        } else {
            ""
        }
    );
}

/// A group's frame and title, then its boxes or blocks of tiles.
fn group(out: &mut String, drawing: &Drawing, placed: &Layout, gi: usize, target: Target) {
    let group = &drawing.groups[gi];
    let p = &placed.groups[gi];
    let role = match group.role {
        GroupRole::Ward => "ward",
        GroupRole::Outside => "outside",
        GroupRole::Discovered => "discovered",
    };
    let devices = group.nodes.len();
    let title = format!(
        "{} · {devices} {}",
        group.title,
        match (group.role, devices) {
            (GroupRole::Outside, 1) => "address",
            (GroupRole::Outside, _) => "addresses",
            (_, 1) => "device",
            _ => "devices",
        }
    );
    let r = p.rect;
    let _ = write!(
        out,
        "<g class=\"dw-g\" data-group=\"{}\" data-role=\"{role}\"><rect data-box=\"group\" data-name=\"g{gi}\" class=\"dw-group dw-{role}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"8\"/><text class=\"dw-gtitle\" x=\"{}\" y=\"{}\" data-fit=\"{}\">{}</text>",
        esc(&group.title),
        r.x,
        r.y,
        r.w,
        r.h,
        r.x + PAD,
        r.y + 19,
        r.w - 2 * PAD,
        esc(&layout::fit(&title, r.w - 2 * PAD, 13, true))
    );
    if p.compact {
        for (bi, block) in p.blocks.iter().enumerate() {
            let b = block.rect;
            let flagged = block
                .nodes
                .iter()
                .filter(|n| drawing.nodes[**n].marks.violations > 0)
                .count();
            let text = format!(
                "{} · {}{}",
                block.kind,
                block.nodes.len(),
                if flagged > 0 {
                    format!(" · {flagged} with violations")
                } else {
                    String::new()
                }
            );
            let _ = write!(
                out,
                "<rect data-box=\"block\" data-name=\"g{gi}/b{bi}\" data-parent=\"g{gi}\" class=\"dw-block\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"4\"/><text class=\"dw-btitle\" x=\"{}\" y=\"{}\" data-fit=\"{}\">{}</text>",
                b.x,
                b.y,
                b.w,
                b.h,
                b.x + PAD,
                b.y + BLOCK_HEAD - 6,
                b.w - 2 * PAD,
                esc(&layout::fit(&text, b.w - 2 * PAD, 11, false))
            );
            for &n in &block.nodes {
                tile(
                    out,
                    &drawing.nodes[n],
                    placed.boxes[n],
                    n,
                    &format!("g{gi}/b{bi}"),
                    target,
                );
            }
        }
    } else {
        for &n in &group.nodes {
            node_box(
                out,
                &drawing.nodes[n],
                placed.boxes[n],
                n,
                &format!("g{gi}"),
                target,
            );
        }
    }
    out.push_str("</g>");
}

/// `<a href="#card">` around a device's box in the page; nothing otherwise.
fn link_open(out: &mut String, node: &Node, target: Target) -> bool {
    match (&node.card, target) {
        (Some(card), Target::Page) => {
            let _ = write!(out, "<a href=\"#{}\">", esc(card));
            true
        }
        _ => false,
    }
}

/// The attributes every box and tile has: what it is, its level and parent, its classes.
fn box_attrs(node: &Node, n: usize, parent: &str, level: &str) -> String {
    format!(
        "data-box=\"{level}\" data-name=\"n{n}\" data-parent=\"{parent}\" {}data-node=\"{}\" data-protection=\"{}\" data-violations=\"{}\" data-spoofed=\"{}\" class=\"dw-p-{}{}{}\"",
        if node.card.is_some() {
            format!("data-device=\"{}\" ", esc(&node.id))
        } else {
            String::new()
        },
        esc(&node.id),
        node.shade.label(),
        node.marks.violations,
        node.marks.spoofed,
        node.shade.label(),
        if node.marks.violations > 0 {
            " dw-viol"
        } else {
            ""
        },
        if node.marks.spoofed {
            " dw-spoofed"
        } else {
            ""
        },
    )
}

/// A named box: name, kind and protection, and its marks.
fn node_box(out: &mut String, node: &Node, r: Rect, n: usize, parent: &str, target: Target) {
    let linked = link_open(out, node, target);
    let mut marks = String::new();
    let mut marks_width = 0;
    if node.marks.violations > 0 {
        let text = format!("! {}", node.marks.violations);
        let w = 16 + 7 * text.len() as i32;
        marks_width += w + 6;
        let x = r.right() - PAD - w;
        let _ = write!(
            marks,
            "<rect class=\"dw-mark\" x=\"{x}\" y=\"{}\" width=\"{w}\" height=\"18\" rx=\"9\"/><text class=\"dw-mark-text\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{text}</text>",
            r.y + 11,
            x + w / 2,
            r.y + 24
        );
    }
    if node.marks.spoofed {
        let w = 64;
        let x = r.right() - PAD - marks_width - w;
        marks_width += w + 6;
        let _ = write!(
            marks,
            "<rect class=\"dw-spoof\" x=\"{x}\" y=\"{}\" width=\"{w}\" height=\"18\" rx=\"3\"/><text class=\"dw-mark-text\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">spoofed</text>",
            r.y + 11,
            x + w / 2,
            r.y + 24
        );
    }
    let text_w = r.w - 2 * PAD - marks_width;
    let second = match node.shade {
        Shade::Protected(p) => format!("{} · {}", node.kind, p.label()),
        Shade::Unenrolled => node.kind.clone(),
    };
    let _ = write!(
        out,
        "<g class=\"dw-node\"><title>{}</title><rect {} x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"6\"/><text class=\"dw-name\" x=\"{}\" y=\"{}\" data-fit=\"{text_w}\">{}</text><text class=\"dw-kind\" x=\"{}\" y=\"{}\" data-fit=\"{text_w}\">{}</text>{marks}</g>",
        esc(&node.title),
        box_attrs(node, n, parent, "node"),
        r.x,
        r.y,
        r.w,
        r.h,
        r.x + PAD,
        r.y + 17,
        esc(&layout::fit(&node.label, text_w, 13, true)),
        r.x + PAD,
        r.y + 32,
        esc(&layout::fit(&second, text_w, 11, false)),
    );
    if linked {
        out.push_str("</a>");
    }
}

/// A tile: the device's colour and marks, its name in the tooltip.
fn tile(out: &mut String, node: &Node, r: Rect, n: usize, parent: &str, target: Target) {
    let linked = link_open(out, node, target);
    let _ = write!(
        out,
        "<rect {} x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"2\"><title>{}</title></rect>",
        box_attrs(node, n, parent, "node"),
        r.x,
        r.y,
        r.w,
        r.h,
        esc(&node.title)
    );
    if linked {
        out.push_str("</a>");
    }
}
