//! The hive as a tree of nodes: how many nodes lie below each one, and how
//! many of those are not running, for every node in one pass.
//!
//! τ of a node counts the nodes below it, and `/api/nodes` and the tension
//! sampler want it for every node at once. Walking each node's subtree by
//! scanning the whole list was quadratic: at 1,000 nodes, a million parent
//! comparisons (and as many reference-count updates) per call, and the
//! bench polls `/api/nodes` five times a second while a hive starts.

use std::collections::HashMap;

/// One node as the tree sees it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub id: &'a str,
    pub parent: Option<&'a str>,
    pub running: bool,
}

/// What lies below one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Below {
    /// Nodes descending from it.
    pub nodes: usize,
    /// Of those, the ones not running.
    pub down: usize,
}

/// For each entry, in the same order, what lies below it. A node whose
/// parent is not in the list counts as a root; one caught in a parent
/// cycle (which the hive never makes) counts nothing below it.
pub fn below(entries: &[Entry<'_>]) -> Vec<Below> {
    let index: HashMap<&str, usize> = entries.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    let mut roots = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match e.parent.and_then(|p| index.get(p)) {
            Some(&p) if p != i => children[p].push(i),
            _ => roots.push(i),
        }
    }
    let mut counts = vec![Below::default(); entries.len()];
    let mut seen = vec![false; entries.len()];
    // Post-order without recursion: a chain of generations may be deep.
    let mut stack = Vec::new();
    for root in roots {
        stack.push((root, false));
        while let Some((i, children_done)) = stack.pop() {
            if children_done {
                for &c in &children[i] {
                    counts[i].nodes += 1 + counts[c].nodes;
                    counts[i].down += usize::from(!entries[c].running) + counts[c].down;
                }
                continue;
            }
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            stack.push((i, true));
            stack.extend(children[i].iter().map(|&c| (c, false)));
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(id: &'a str, parent: Option<&'a str>, running: bool) -> Entry<'a> {
        Entry {
            id,
            parent,
            running,
        }
    }

    #[test]
    fn each_node_counts_every_descendant_and_the_ones_down() {
        // n0 ─┬─ n1 ─── n3 (down)
        //     └─ n2 (down) ─── n4
        let entries = [
            entry("n0", None, true),
            entry("n1", Some("n0"), true),
            entry("n2", Some("n0"), false),
            entry("n3", Some("n1"), false),
            entry("n4", Some("n2"), true),
        ];
        let b = below(&entries);
        let pairs: Vec<(usize, usize)> = b.iter().map(|b| (b.nodes, b.down)).collect();
        assert_eq!(pairs, [(4, 2), (1, 1), (1, 0), (0, 0), (0, 0)]);
    }

    #[test]
    fn a_deep_chain_and_a_wide_fan_are_counted_in_one_pass() {
        let ids: Vec<String> = (0..5000).map(|i| format!("n{i}")).collect();
        let chain: Vec<Entry> = (0..ids.len())
            .map(|i| {
                entry(
                    &ids[i],
                    i.checked_sub(1).map(|p| ids[p].as_str()),
                    i % 2 == 0,
                )
            })
            .collect();
        let b = below(&chain);
        assert_eq!(b[0].nodes, 4999);
        assert_eq!(b[0].down, 2500);
        assert_eq!(b[4999], Below::default());
        let fan: Vec<Entry> = (0..ids.len())
            .map(|i| entry(&ids[i], (i > 0).then_some("n0"), true))
            .collect();
        assert_eq!(
            below(&fan)[0],
            Below {
                nodes: 4999,
                down: 0
            }
        );
    }

    #[test]
    fn an_unknown_parent_is_a_root_and_a_cycle_counts_nothing() {
        let entries = [
            entry("a", Some("gone"), true),
            entry("b", Some("a"), false),
            entry("x", Some("y"), true),
            entry("y", Some("x"), true),
        ];
        let b = below(&entries);
        assert_eq!(b[0], Below { nodes: 1, down: 1 });
        assert_eq!(b[2], Below::default());
        assert_eq!(b[3], Below::default());
    }
}
