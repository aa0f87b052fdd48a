//! Where the drawing's boxes go, as pure geometry in whole pixels: groups stacked in two
//! columns, devices as boxes one under another, or (when a group or a side has many) as
//! small tiles in one block per kind; edges bundled per pair of boxes or blocks, curved
//! from one box's side to the other's; and the checks that nothing overlaps.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Drawing, Shade, Side};
use crate::view::devmap::model::Protection;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub fn right(&self) -> i32 {
        self.x + self.w
    }

    pub fn bottom(&self) -> i32 {
        self.y + self.h
    }

    pub fn mid_y(&self) -> i32 {
        self.y + self.h / 2
    }

    /// Shares some area with `other` (touching edges do not count).
    pub fn overlaps(&self, other: &Rect) -> bool {
        self.x < other.right()
            && other.x < self.right()
            && self.y < other.bottom()
            && other.y < self.bottom()
    }

    pub fn contains(&self, other: &Rect) -> bool {
        self.x <= other.x
            && self.y <= other.y
            && other.right() <= self.right()
            && other.bottom() <= self.bottom()
    }
}

/// The drawing's width; its height follows from what it holds.
pub const WIDTH: i32 = 1200;
/// Room left and right of the columns for edges that loop back to their own side.
const MARGIN: i32 = 48;
pub const COLUMN: i32 = 380;
/// Below the legend and the column titles.
pub const TOP: i32 = 96;
const GROUP_HEAD: i32 = 28;
pub const PAD: i32 = 8;
const GROUP_GAP: i32 = 16;
pub const NODE_H: i32 = 40;
const NODE_GAP: i32 = 6;
pub const BLOCK_HEAD: i32 = 20;
pub const TILE: i32 = 14;
const TILE_GAP: i32 = 4;
const BLOCK_GAP: i32 = 6;

/// A ward with more devices than this is drawn as tiles grouped by kind.
pub const DETAIL_LIMIT: usize = 12;
/// With more boxes than this on the left, every group there is drawn as tiles.
pub const SIDE_LIMIT: usize = 48;
/// Servers keep their names longer: a group on the right becomes tiles beyond this.
pub const SERVER_DETAIL_LIMIT: usize = 40;

/// Whether a group of `group_len` boxes, on a side of `side_len`, is drawn as tiles
/// grouped by kind rather than as named boxes.
pub fn compact(side: Side, group_len: usize, side_len: usize) -> bool {
    match side {
        Side::Left => group_len > DETAIL_LIMIT || side_len > SIDE_LIMIT,
        Side::Right => group_len > SERVER_DETAIL_LIMIT,
    }
}

pub fn column_x(side: Side) -> i32 {
    match side {
        Side::Left => MARGIN,
        Side::Right => WIDTH - MARGIN - COLUMN,
    }
}

/// Tiles in one row of a block `width` wide.
pub fn tiles_per_row(width: i32) -> usize {
    ((width - 2 * PAD + TILE_GAP) / (TILE + TILE_GAP)).max(1) as usize
}

/// The height of a block of `tiles` tiles, `width` wide.
pub fn block_height(tiles: usize, width: i32) -> i32 {
    let rows = tiles.div_ceil(tiles_per_row(width)).max(1) as i32;
    BLOCK_HEAD + rows * TILE + (rows - 1) * TILE_GAP + PAD
}

/// The tiles of one kind in a group drawn as tiles.
#[derive(Clone, Debug)]
pub struct Block {
    pub kind: String,
    pub rect: Rect,
    /// Node indexes.
    pub nodes: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct PlacedGroup {
    pub rect: Rect,
    /// Drawn as tiles by kind.
    pub compact: bool,
    pub blocks: Vec<Block>,
}

/// What a node's edges attach to: its own box, or the block its tile is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Anchor {
    Node(usize),
    /// Group index, block index.
    Block(usize, usize),
}

/// The drawing placed.
#[derive(Clone, Debug)]
pub struct Layout {
    pub width: i32,
    pub height: i32,
    /// In the order of [`Drawing::groups`].
    pub groups: Vec<PlacedGroup>,
    /// Each node's box (a tile in a compact group).
    pub boxes: Vec<Rect>,
    pub anchors: Vec<Anchor>,
    pub sides: Vec<Side>,
    /// The group of each node.
    pub group_of: Vec<usize>,
}

impl Layout {
    pub fn anchor_rect(&self, anchor: Anchor) -> Rect {
        match anchor {
            Anchor::Node(n) => self.boxes[n],
            Anchor::Block(g, b) => self.groups[g].blocks[b].rect,
        }
    }

    pub fn anchor_side(&self, anchor: Anchor) -> Side {
        match anchor {
            Anchor::Node(n) => self.sides[n],
            Anchor::Block(g, b) => self.sides[self.groups[g].blocks[b].nodes[0]],
        }
    }
}

/// Places the drawing: each side's groups one under another from [`TOP`].
pub fn layout(drawing: &Drawing) -> Layout {
    let n = drawing.nodes.len();
    let mut out = Layout {
        width: WIDTH,
        height: 0,
        groups: Vec::with_capacity(drawing.groups.len()),
        boxes: vec![Rect::default(); n],
        anchors: (0..n).map(Anchor::Node).collect(),
        sides: vec![Side::Left; n],
        group_of: vec![0; n],
    };
    let side_len = |side: Side| -> usize {
        drawing
            .groups
            .iter()
            .filter(|g| g.side == side)
            .map(|g| g.nodes.len())
            .sum()
    };
    let lens = [side_len(Side::Left), side_len(Side::Right)];
    let mut next_y = [TOP, TOP];
    for (gi, group) in drawing.groups.iter().enumerate() {
        let s = group.side as usize;
        let compact = compact(group.side, group.nodes.len(), lens[s]);
        let origin = (column_x(group.side), next_y[s]);
        let placed = if compact {
            place_tiles(drawing, gi, origin, &mut out)
        } else {
            place_boxes(drawing, gi, origin, &mut out)
        };
        next_y[s] = placed.rect.bottom() + GROUP_GAP;
        for &node in &group.nodes {
            out.sides[node] = group.side;
            out.group_of[node] = gi;
        }
        out.groups.push(placed);
    }
    out.height = next_y[0].max(next_y[1]) - GROUP_GAP + MARGIN / 2;
    out
}

/// A group of named boxes, one under another.
fn place_boxes(drawing: &Drawing, gi: usize, (x, y): (i32, i32), out: &mut Layout) -> PlacedGroup {
    let mut cursor = y + GROUP_HEAD;
    for &node in &drawing.groups[gi].nodes {
        out.boxes[node] = Rect {
            x: x + PAD,
            y: cursor,
            w: COLUMN - 2 * PAD,
            h: NODE_H,
        };
        cursor += NODE_H + NODE_GAP;
    }
    PlacedGroup {
        rect: Rect {
            x,
            y,
            w: COLUMN,
            h: cursor - NODE_GAP + PAD - y,
        },
        compact: false,
        blocks: Vec::new(),
    }
}

/// A group of tiles, one block per kind (kinds by name), tiles in rows.
fn place_tiles(drawing: &Drawing, gi: usize, (x, y): (i32, i32), out: &mut Layout) -> PlacedGroup {
    let mut kinds: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &node in &drawing.groups[gi].nodes {
        kinds
            .entry(drawing.nodes[node].kind.as_str())
            .or_default()
            .push(node);
    }
    let width = COLUMN - 2 * PAD;
    let per_row = tiles_per_row(width);
    let mut cursor = y + GROUP_HEAD;
    let mut blocks = Vec::with_capacity(kinds.len());
    for (kind, nodes) in kinds {
        let rect = Rect {
            x: x + PAD,
            y: cursor,
            w: width,
            h: block_height(nodes.len(), width),
        };
        for (i, &node) in nodes.iter().enumerate() {
            let (row, col) = ((i / per_row) as i32, (i % per_row) as i32);
            out.boxes[node] = Rect {
                x: rect.x + PAD + col * (TILE + TILE_GAP),
                y: rect.y + BLOCK_HEAD + row * (TILE + TILE_GAP),
                w: TILE,
                h: TILE,
            };
            out.anchors[node] = Anchor::Block(gi, blocks.len());
        }
        cursor += rect.h + BLOCK_GAP;
        blocks.push(Block {
            kind: kind.to_string(),
            rect,
            nodes,
        });
    }
    PlacedGroup {
        rect: Rect {
            x,
            y,
            w: COLUMN,
            h: cursor - BLOCK_GAP + PAD - y,
        },
        compact: true,
        blocks,
    }
}

/// Orders each group on the right by where its boxes' partners on the left are (the mean
/// of their places, top to bottom), so that edges cross less; boxes without partners on
/// the left keep their order, after the others.
pub fn order_by_partners(drawing: &mut Drawing) {
    let mut place = vec![None; drawing.nodes.len()];
    let left = drawing.groups.iter().filter(|g| g.side == Side::Left);
    for (rank, &node) in left.flat_map(|g| &g.nodes).enumerate() {
        place[node] = Some(rank as f64);
    }
    let mut sums = vec![(0.0_f64, 0_u32); drawing.nodes.len()];
    for e in &drawing.edges {
        for (node, partner) in [(e.to, e.from), (e.from, e.to)] {
            if let Some(rank) = place[partner] {
                sums[node].0 += rank;
                sums[node].1 += 1;
            }
        }
    }
    for group in drawing.groups.iter_mut().filter(|g| g.side == Side::Right) {
        let key = |n: &usize| match sums[*n] {
            (_, 0) => f64::INFINITY,
            (sum, count) => sum / f64::from(count),
        };
        // Stable: equal places keep their order.
        group.nodes.sort_by(|a, b| key(a).total_cmp(&key(b)));
    }
}

/// Edges bundled between two anchors.
#[derive(Clone, Debug)]
pub struct Route {
    pub from: Anchor,
    pub to: Anchor,
    pub packets: u64,
    /// Edges bundled into it.
    pub edges: usize,
    /// The weakest protection of its edges: a line is green only if every flow on it is
    /// enforced.
    pub shade: Shade,
    pub violation: bool,
    pub services: BTreeSet<String>,
}

/// How much a protection holds back: nothing (not enrolled), break-glass, learning,
/// audited, enforced.
pub fn strength(shade: Shade) -> u8 {
    match shade {
        Shade::Unenrolled => 0,
        Shade::Protected(Protection::BreakGlass) => 1,
        Shade::Protected(Protection::Learning) => 2,
        Shade::Protected(Protection::Audited) => 3,
        Shade::Protected(Protection::Enforced) => 4,
    }
}

/// The drawing's edges bundled per pair of anchors (a block stands for its tiles) and
/// kind (baseline or violation); edges within one block are left out (its tiles carry
/// their marks).
pub fn routes(drawing: &Drawing, layout: &Layout) -> Vec<Route> {
    let mut routes: BTreeMap<(Anchor, Anchor, bool), Route> = BTreeMap::new();
    for e in &drawing.edges {
        let (from, to) = (layout.anchors[e.from], layout.anchors[e.to]);
        if from == to {
            continue;
        }
        let route = routes
            .entry((from, to, e.violation))
            .or_insert_with(|| Route {
                from,
                to,
                packets: 0,
                edges: 0,
                shade: e.shade,
                violation: e.violation,
                services: BTreeSet::new(),
            });
        route.packets += e.packets;
        route.edges += 1;
        if strength(e.shade) < strength(route.shade) {
            route.shade = e.shade;
        }
        route.services.extend(e.services.iter().cloned());
    }
    routes.into_values().collect()
}

/// An edge's curve: where it starts and ends, and its SVG path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Curve {
    pub start: (i32, i32),
    pub end: (i32, i32),
    pub path: String,
}

/// How far an edge between two boxes of one side bulges out of the column.
const LOOP: i32 = 40;

/// The curve from `from` to `to`: from the side of each box that faces the other column
/// (or, both on one side, the outer sides, bulging into the margin).
pub fn curve(from: Rect, from_side: Side, to: Rect, to_side: Side) -> Curve {
    let (start, end, c1, c2) = match (from_side, to_side) {
        (Side::Left, Side::Right) | (Side::Right, Side::Left) => {
            let (sx, ex) = if from_side == Side::Left {
                (from.right(), to.x)
            } else {
                (from.x, to.right())
            };
            let dx = (ex - sx) / 2;
            (
                (sx, from.mid_y()),
                (ex, to.mid_y()),
                (sx + dx, from.mid_y()),
                (ex - dx, to.mid_y()),
            )
        }
        (Side::Right, Side::Right) => (
            (from.right(), from.mid_y()),
            (to.right(), to.mid_y()),
            (from.right() + LOOP, from.mid_y()),
            (to.right() + LOOP, to.mid_y()),
        ),
        (Side::Left, Side::Left) => (
            (from.x, from.mid_y()),
            (to.x, to.mid_y()),
            (from.x - LOOP, from.mid_y()),
            (to.x - LOOP, to.mid_y()),
        ),
    };
    Curve {
        start,
        end,
        path: format!(
            "M{},{} C{},{} {},{} {},{}",
            start.0, start.1, c1.0, c1.1, c2.0, c2.1, end.0, end.1
        ),
    }
}

/// An edge's stroke width for `packets`, against the busiest edge's `max`: 1 for none,
/// up to 6, on a log scale so that quiet flows still show.
pub fn stroke_width(packets: u64, max: u64) -> f64 {
    if packets == 0 || max == 0 {
        return 1.0;
    }
    let ratio = (packets as f64).ln_1p() / (max as f64).ln_1p();
    (10.0 * (1.0 + 5.0 * ratio.min(1.0))).round() / 10.0
}

/// `text` cut to fit `width` pixels at `font_px` (an ellipsis marks the cut), by an
/// estimate of the widest glyphs of the usual sans-serif fonts; the page measures the
/// real width.
pub fn fit(text: &str, width: i32, font_px: i32, bold: bool) -> String {
    let glyph = f64::from(font_px) * if bold { 0.68 } else { 0.62 };
    let max = (f64::from(width) / glyph).floor().max(1.0) as usize;
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Pairs of `rects` that overlap: a sweep along x, so thousands of tiles cost little.
pub fn overlapping(rects: &[Rect]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..rects.len()).collect();
    order.sort_by_key(|&i| rects[i].x);
    let mut found = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        for &j in &order[k + 1..] {
            if rects[j].x >= rects[i].right() {
                break;
            }
            if rects[i].overlaps(&rects[j]) {
                found.push((i.min(j), i.max(j)));
            }
        }
    }
    found.sort_unstable();
    found
}

/// What is wrong with a layout: groups, blocks or boxes that overlap their own kind, a
/// box outside its group or block, anything outside the drawing. Empty when fine.
pub fn problems(drawing: &Drawing, layout: &Layout) -> Vec<String> {
    let mut problems = Vec::new();
    let groups: Vec<Rect> = layout.groups.iter().map(|g| g.rect).collect();
    let blocks: Vec<Rect> = layout
        .groups
        .iter()
        .flat_map(|g| g.blocks.iter().map(|b| b.rect))
        .collect();
    for (what, rects) in [
        ("groups", &groups),
        ("blocks", &blocks),
        ("boxes", &layout.boxes),
    ] {
        for (a, b) in overlapping(rects) {
            problems.push(format!("{what} {a} and {b} overlap"));
        }
    }
    let canvas = Rect {
        x: 0,
        y: 0,
        w: layout.width,
        h: layout.height,
    };
    for (gi, placed) in layout.groups.iter().enumerate() {
        if !canvas.contains(&placed.rect) {
            problems.push(format!("group {gi} is outside the drawing"));
        }
        for block in &placed.blocks {
            if !placed.rect.contains(&block.rect) {
                problems.push(format!("block {} is outside group {gi}", block.kind));
            }
            for &n in &block.nodes {
                if !block.rect.contains(&layout.boxes[n]) {
                    problems.push(format!("{} is outside its block", drawing.nodes[n].id));
                }
            }
        }
        for &n in &drawing.groups[gi].nodes {
            if !placed.rect.contains(&layout.boxes[n]) {
                problems.push(format!("{} is outside its group", drawing.nodes[n].id));
            }
        }
    }
    problems
}
