//! The device map as one self-contained HTML page: nothing fetched from anywhere, every
//! text escaped, a card per device grouped by ward, "Needs attention" first.

use std::fmt::Write as _;

use super::{
    drawing,
    markup::{card_id, esc},
    model::{DeviceMap, MapDevice},
    text::{ago, duration},
};
use crate::state::activity::{self, format_local};

const CSS: &str = r#"
:root{--ink:#1d2733;--muted:#5d6b7a;--line:#d9e0e7;--bg:#f4f6f8;--card:#fff;
--enf:#1e7b34;--aud:#b26a00;--learn:#1f5fb4;--glass:#7b2cbf;--bad:#c62828;}
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:var(--bg)}
header{background:#14212e;color:#fff;padding:14px 24px}
header h1{margin:0 0 4px;font-size:20px}
header .sub{color:#b8c4d0;font-size:13px}
main{padding:16px 24px 40px}
.chips{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0 0}
.chip{background:#24374a;border-radius:12px;padding:2px 10px;font-size:13px}
.attention{background:#fff4f4;border:1px solid #f0b8b8;border-left:5px solid var(--bad);border-radius:6px;padding:10px 14px;margin:0 0 18px}
.attention h2{margin:0 0 6px;font-size:16px;color:var(--bad)}
.attention ul{margin:0;padding-left:18px}
.ward{margin:0 0 22px}
.ward>h2{font-size:17px;margin:0 0 8px;padding-bottom:4px;border-bottom:2px solid var(--line)}
.ward>h2 small{color:var(--muted);font-weight:normal}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;overflow:hidden}
.card.flagged{border-color:#e7a3a3;box-shadow:0 0 0 2px #f6d5d5}
.card h3{margin:0;font-size:16px;display:flex;flex-wrap:wrap;gap:6px;align-items:center}
.badge{font-size:11px;font-weight:600;border-radius:10px;padding:1px 8px;color:#fff;text-transform:uppercase;letter-spacing:.03em}
.p-enforced{background:var(--enf)}.p-audited{background:var(--aud)}.p-learning{background:var(--learn)}.p-break-glass{background:var(--glass)}
.c-life-critical{background:var(--bad)}.c-high{background:#8d4a12}.c-normal{background:#607080}.c-low{background:#8a96a3}
.flag{background:#fde2e2;color:var(--bad);border:1px solid #f3b4b4}
.kv{display:grid;grid-template-columns:108px 1fr;gap:2px 10px;margin:8px 0;font-size:13px}
.kv dt{color:var(--muted)}.kv dd{margin:0;overflow-wrap:anywhere}
.muted{color:var(--muted)}
.viol{color:var(--bad);font-weight:600}
table.peers{border-collapse:collapse;width:100%;font-size:12.5px;margin:4px 0 8px}
table.peers th{text-align:left;color:var(--muted);font-weight:600;border-bottom:1px solid var(--line);padding:2px 4px}
table.peers td{border-bottom:1px solid #eef1f4;padding:2px 4px;vertical-align:top}
h4{margin:10px 0 2px;font-size:13px}
table.grid{border-collapse:separate;border-spacing:2px;font-size:10px}
table.grid td.c{width:13px;height:13px;border-radius:2px;background:#edf0f3;padding:0}
table.grid td.c.l1{background:#c6e5cc}table.grid td.c.l2{background:#86c795}table.grid td.c.l3{background:#3f9e57}table.grid td.c.l4{background:#1b6a31}
table.grid td.c.lastweek{opacity:.55}
table.grid th{font-weight:normal;color:var(--muted);padding:0 4px 0 0;text-align:right}
table.grid thead th{text-align:left;padding:0}
footer{color:var(--muted);font-size:12px;padding:0 24px 20px}
.architecture{margin:0 0 22px}
.architecture>h2{font-size:17px;margin:0 0 8px;padding-bottom:4px;border-bottom:2px solid var(--line)}
.architecture>h2 small{color:var(--muted);font-weight:normal}
.drawing-frame{overflow-x:auto;background:#fbfcfd;border:1px solid var(--line);border-radius:8px}
.drawing-frame svg{display:block}
.card:target{outline:3px solid var(--learn);outline-offset:2px}
"#;

/// After layout, marks the page as rendered (`data-layout="ok"`) when every device card
/// and activity grid has a size and no card spills over its column: what a browser test
/// reads back. The page reads fine without it.
const SCRIPT: &str = r#"
(function(){
  var cards=document.querySelectorAll('.card'), bad=[];
  cards.forEach(function(c){
    var r=c.getBoundingClientRect(), g=c.querySelector('table.grid');
    if(r.width<200||r.height<80)bad.push(c.id+': card not laid out');
    if(c.scrollWidth>c.clientWidth+1)bad.push(c.id+': content wider than the card');
    if(!g||g.getBoundingClientRect().width<150)bad.push(c.id+': activity grid not laid out');
  });
  document.documentElement.setAttribute('data-layout',bad.length?'bad':'ok');
  document.documentElement.setAttribute('data-layout-problems',bad.join('; '));
  document.documentElement.setAttribute('data-cards',String(cards.length));
})();
"#;

/// The shade of an hour of the activity grid.
fn level(packets: u64, max: u64) -> &'static str {
    if packets == 0 {
        return "";
    }
    // Log scale against the device's busiest hour, so a quiet device's hours still show.
    let ratio = (packets as f64).ln_1p() / (max as f64).ln_1p().max(1e-9);
    match ratio {
        r if r > 0.85 => " l4",
        r if r > 0.6 => " l3",
        r if r > 0.35 => " l2",
        _ => " l1",
    }
}

/// The activity grid: hour of day by day of week.
fn html_grid(out: &mut String, device: &MapDevice, now: u64) {
    let max = device
        .activity
        .iter()
        .flat_map(|d| &d.cells)
        .map(|c| c.packets)
        .max()
        .unwrap_or(0);
    let current_hour = activity::local_time(now).hour;
    out.push_str("<table class=\"grid\" aria-label=\"activity by hour of day and day of week\"><thead><tr><th></th>");
    for hour in 0..24 {
        if hour % 6 == 0 {
            let _ = write!(out, "<th colspan=\"6\">{hour:02}h</th>");
        }
    }
    out.push_str("</tr></thead><tbody>");
    let rows = device.activity.len();
    for (row, day) in device.activity.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><th title=\"{}\">{}</th>",
            esc(&day.date),
            esc(&day.weekday)
        );
        for cell in &day.cells {
            // Today is the last row; its hours after the current one are last week's.
            let lastweek = if row + 1 == rows && cell.hour > current_hour {
                " lastweek"
            } else {
                ""
            };
            // Quiet hours carry nothing but their shade: at hundreds of devices the
            // page stays small enough to render in a moment.
            if cell.packets == 0 {
                let _ = write!(out, "<td class=\"c{lastweek}\"></td>");
                continue;
            }
            let when = if cell.hour_start == 0 {
                "no such hour".to_string()
            } else {
                format_local(cell.hour_start)
            };
            let _ = write!(
                out,
                "<td class=\"c{}{}\" data-hour-start=\"{}\" data-packets=\"{}\" title=\"{} {} {:02}:00: {} packets, {} bytes\"></td>",
                level(cell.packets, max),
                lastweek,
                cell.hour_start,
                cell.packets,
                esc(&day.weekday),
                esc(&when),
                cell.hour,
                cell.packets,
                cell.bytes
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// One device's card.
fn html_device(out: &mut String, d: &MapDevice, now: u64) {
    let flagged = d.flags.iter().any(|f| f != "never-seen");
    let _ = write!(
        out,
        "<article class=\"card{}\" id=\"{}\" data-device=\"{}\" data-protection=\"{}\">",
        if flagged { " flagged" } else { "" },
        card_id(&d.name),
        esc(&d.name),
        d.protection.label()
    );
    let _ = write!(
        out,
        "<h3>{} <span class=\"badge p-{}\">{}</span> <span class=\"badge c-{}\">{}</span>",
        esc(&d.name),
        d.protection.label(),
        d.protection.label(),
        esc(&d.criticality),
        esc(&d.criticality)
    );
    for flag in &d.flags {
        let text = match flag.as_str() {
            "no-location" => "no location",
            "learning-too-long" => "learning too long",
            "violations" => "violations",
            "never-seen" => continue,
            other => other,
        };
        let _ = write!(out, " <span class=\"badge flag\">{text}</span>");
    }
    out.push_str("</h3>");
    html_facts(out, d, now);
    html_peers(out, d, now);
    html_violations(out, d);
    let _ = write!(
        out,
        "<h4>When it is used <span class=\"muted\">({} of the last 168 hours)</span></h4>",
        d.active_hours
    );
    html_grid(out, d, now);
    out.push_str("</article>");
}

/// The device's facts: kind, vendor, address, location, protection, traffic, baseline,
/// violations, owner, notes.
fn html_facts(out: &mut String, d: &MapDevice, now: u64) {
    out.push_str("<dl class=\"kv\">");
    let mut kv = |k: &str, v: String| {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), v);
    };
    kv("kind", esc(&d.kind));
    kv(
        "vendor",
        match (&d.vendor, &d.vendor_note) {
            (Some(v), _) => format!("<span class=\"vendor\">{}</span>", esc(v)),
            (None, Some(note)) => format!("<span class=\"muted\">none: {}</span>", esc(note)),
            (None, None) => "<span class=\"muted\">none</span>".into(),
        },
    );
    kv(
        "address",
        format!(
            "{}{}",
            esc(&d
                .addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")),
            d.mac.as_ref().map_or_else(String::new, |m| format!(
                " <span class=\"muted\">MAC {}</span>",
                esc(m)
            ))
        ),
    );
    kv(
        "location",
        if d.has_location {
            esc(&d.location)
        } else {
            "<span class=\"viol\">unknown: add a location to the inventory</span>".into()
        },
    );
    kv(
        "protection",
        format!(
            "<b>{}</b>: {} <span class=\"muted\">(mode {})</span>",
            d.protection.label(),
            esc(&d.protection_detail),
            esc(&d.mode)
        ),
    );
    kv(
        "learning coverage",
        format!(
            "{} of the 168 hours of the week{}",
            d.learning_coverage_hours,
            if d.learning_coverage_hours < 168 {
                " <span class=\"viol\">(less than a week: not every shift is in its baseline)</span>"
            } else {
                ""
            }
        ),
    );
    kv(
        "traffic",
        format!(
            "{} pkts out / {} in, {} / {} bytes; last seen {}",
            d.traffic.packets_sent,
            d.traffic.packets_received,
            d.traffic.bytes_sent,
            d.traffic.bytes_received,
            esc(&ago(now, d.traffic.last_seen))
        ),
    );
    let b = &d.baseline;
    let mut baseline = format!(
        "{} {} ({} learned)",
        b.entries,
        if b.entries == 1 { "entry" } else { "entries" },
        b.learned
    );
    if let Some(age) = b.age_seconds {
        let _ = write!(baseline, ", {} old", duration(age));
    }
    if let Some(stable) = b.stable_since {
        let _ = write!(baseline, "; stable since {}", esc(&format_local(stable)));
    }
    let grown: u64 = b.new_entries_per_hour.iter().sum();
    let _ = write!(baseline, "; {grown} new in the last 24 h");
    kv("baseline", baseline);
    kv(
        "violations",
        if d.violations.dropped_packets + d.violations.would_drop_packets == 0
            && d.violations.flows == 0
        {
            "none".into()
        } else {
            format!(
                "<span class=\"viol\">{} dropped, {} would-drop packets; {} flows outside the baseline</span>",
                d.violations.dropped_packets, d.violations.would_drop_packets, d.violations.flows
            )
        },
    );
    if let Some(owner) = &d.owner {
        kv("owner", esc(owner));
    }
    if let Some(notes) = &d.notes {
        kv("notes", esc(notes));
    }
    out.push_str("</dl>");
}

/// A table of peers per role.
fn html_peers(out: &mut String, d: &MapDevice, now: u64) {
    for group in &d.peers {
        let title = match group.role.as_str() {
            "server" => "Servers it uses",
            "client" => "Clients it serves",
            _ => "Peers",
        };
        let _ = write!(
            out,
            "<h4>{title}</h4><table class=\"peers\" data-role=\"{}\"><tr><th>peer</th><th>services</th><th>packets</th><th>last seen</th></tr>",
            esc(&group.role)
        );
        for p in &group.peers {
            let _ = write!(
                out,
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.name),
                p.kind.as_ref().map_or_else(
                    || " <span class=\"muted\">(not enrolled)</span>".into(),
                    |k| format!(" <span class=\"muted\">({})</span>", esc(k))
                ),
                esc(&p.services.join(", ")),
                p.packets,
                esc(&ago(now, p.last_seen))
            );
        }
        out.push_str("</table>");
    }
}

/// The busiest flows outside the baseline.
fn html_violations(out: &mut String, d: &MapDevice) {
    if !d.violations.top.is_empty() {
        let _ = write!(
            out,
            "<h4 class=\"viol\">Outside the baseline{}</h4><table class=\"peers violations\"><tr><th>peer</th><th>service</th><th>packets</th><th>dropped</th></tr>",
            if d.violations.flows > d.violations.top.len() {
                format!(
                    " (busiest {} of {})",
                    d.violations.top.len(),
                    d.violations.flows
                )
            } else {
                String::new()
            }
        );
        for v in &d.violations.top {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&v.peer),
                esc(&v.service),
                v.packets,
                v.dropped_packets
            );
        }
        out.push_str("</table>");
    }
}

/// The drawing of the architecture, each device linked to its card below.
fn html_drawing(out: &mut String, map: &DeviceMap) {
    let drawing = drawing::build(map, &drawing::identity_of(map));
    let _ = write!(
        out,
        "<section class=\"architecture\" id=\"architecture\"><h2>Architecture <small>wards and their devices, the servers and services they use; click a device for its card</small></h2><div class=\"drawing-frame\">{}</div></section><script>{}</script>",
        drawing::svg::svg(&drawing, drawing::svg::Target::Page),
        drawing::svg::CHECK_SCRIPT
    );
}

/// The map as one self-contained page.
pub fn page(map: &DeviceMap) -> String {
    let now = map.generated_at;
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(
        out,
        "<title>Device map — {} devices</title><style>{CSS}</style></head><body>",
        map.summary.devices
    );
    let interfaces: Vec<String> = map
        .interfaces
        .iter()
        .map(|i| format!("{} ({})", i.name, i.xdp_mode))
        .collect();
    let _ = write!(
        out,
        "<header><h1>Device map</h1><div class=\"sub\">generated {} · router mode <b>{}</b>{}</div><div class=\"chips\">",
        esc(&map.generated_at_local),
        esc(&map.mode),
        if interfaces.is_empty() {
            String::new()
        } else {
            format!(" · on {}", esc(&interfaces.join(", ")))
        }
    );
    let s = &map.summary;
    for (label, value) in [
        ("devices", s.devices),
        ("wards", s.wards),
        ("enforced", s.enforced),
        ("audited", s.audited),
        ("learning", s.learning),
        ("break-glass", s.break_glass),
        ("with violations", s.with_violations),
    ] {
        let _ = write!(out, "<span class=\"chip\">{value} {label}</span>");
    }
    out.push_str("</div></header><main>");
    html_drawing(&mut out, map);
    if !map.attention.is_empty() {
        let _ = write!(
            out,
            "<section class=\"attention\" id=\"attention\"><h2>Needs attention ({})</h2><ul>",
            map.attention.len()
        );
        for a in &map.attention {
            let _ = write!(
                out,
                "<li><a href=\"#{}\"><b>{}</b></a> <span class=\"muted\">{}</span>: {}</li>",
                card_id(&a.device),
                esc(&a.device),
                esc(&if a.ward.starts_with('(') {
                    a.ward.clone()
                } else {
                    format!("({})", a.ward)
                }),
                esc(&a.reasons.join("; "))
            );
        }
        out.push_str("</ul></section>");
    }
    for ward in &map.wards {
        let _ = write!(
            out,
            "<section class=\"ward\" data-ward=\"{}\"><h2>{} <small>{} device{}</small></h2><div class=\"cards\">",
            esc(&ward.name),
            esc(&ward.name),
            ward.devices.len(),
            if ward.devices.len() == 1 { "" } else { "s" }
        );
        for device in &ward.devices {
            html_device(&mut out, device, now);
        }
        out.push_str("</div></section>");
    }
    if !map.discovered.is_empty() {
        let _ = write!(
            out,
            "<section class=\"ward discovered\" id=\"discovered\"><h2>Discovered, not in the inventory <small>{} device{}</small></h2><table><thead><tr><th>MAC</th><th>vendor</th><th>addresses</th><th>last seen</th><th>packets</th><th>leg</th><th>services used</th></tr></thead><tbody>",
            map.discovered.len(),
            if map.discovered.len() == 1 { "" } else { "s" }
        );
        for d in &map.discovered {
            let addresses: Vec<String> = d.addresses.iter().map(|a| a.to_string()).collect();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.mac),
                esc(&d.vendor),
                esc(&addresses.join(", ")),
                esc(&d.last_seen),
                d.packets,
                esc(&d.interface),
                esc(&d.services.join(", "))
            );
        }
        out.push_str("</tbody></table></section>");
    }
    out.push_str("</main><footer>Protections: <b>enforced</b> drops what is outside the baseline; <b>audited</b> counts it; <b>learning</b> adds it to the baseline; <b>break-glass</b> lifts enforcement for an emergency. Activity: packets per hour, local time; today is the last row, its later hours are last week's. Vendors from the IEEE registry.</footer>");
    let _ = writeln!(out, "<script>{SCRIPT}</script></body></html>");
    out
}
