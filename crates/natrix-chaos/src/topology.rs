//! Network partitions as sets of cut node pairs: how each kind of partition cuts a cluster, and
//! which nodes are left in a minority of a Raft group by a cut.

use std::collections::BTreeSet;

/// An unordered pair of node indices that cannot reach each other, smaller index first.
pub type CutPair = (usize, usize);

fn pair(a: usize, b: usize) -> CutPair {
    (a.min(b), a.max(b))
}

/// Every pair with one node in `side` and the other among the `n` nodes outside it: `side` and
/// the rest are two halves that cannot talk (majority/minority, an isolated node).
pub fn split(n: usize, side: &[usize]) -> Vec<CutPair> {
    let inside: BTreeSet<usize> = side.iter().copied().filter(|i| *i < n).collect();
    let mut cut = BTreeSet::new();
    for &a in &inside {
        for b in (0..n).filter(|b| !inside.contains(b)) {
            cut.insert(pair(a, b));
        }
    }
    cut.into_iter().collect()
}

/// A bridge: the nodes in `order` form two halves, `order[..n/2]` and `order[n/2+1..]`, that
/// reach each other only through the middle node `order[n/2]` (three nodes: the outer two are cut
/// from each other and both see the middle one).
pub fn bridge(order: &[usize]) -> Vec<CutPair> {
    let middle = order.len() / 2;
    let (left, right) = (&order[..middle], &order[(middle + 1).min(order.len())..]);
    let mut cut = BTreeSet::new();
    for &a in left {
        for &b in right {
            cut.insert(pair(a, b));
        }
    }
    cut.into_iter().collect()
}

/// The nodes `of` can reach, directly or through others, when the `cut` pairs cannot talk
/// (`of` included). Reaching through others counts because a publish may be handed from node to
/// node on its way to the stream leader.
pub fn component<'a>(nodes: &'a [String], cut: &[(String, String)], of: &str) -> BTreeSet<&'a str> {
    let blocked = |a: &str, b: &str| {
        cut.iter()
            .any(|(x, y)| (x == a && y == b) || (x == b && y == a))
    };
    let mut seen: BTreeSet<&'a str> = BTreeSet::new();
    let Some(start) = nodes.iter().find(|n| n.as_str() == of) else {
        return seen;
    };
    let mut frontier = vec![start.as_str()];
    seen.insert(start.as_str());
    while let Some(at) = frontier.pop() {
        for next in nodes {
            if !seen.contains(next.as_str()) && !blocked(at, next) {
                seen.insert(next.as_str());
                frontier.push(next.as_str());
            }
        }
    }
    seen
}

/// Whether `node` is cut off from a majority of `voters` (a Raft group's members): no leader
/// with a quorum can receive what a client on `node` sends, nor answer it, while the cut lasts.
/// `None` when the voters are unknown.
pub fn in_minority(
    nodes: &[String],
    cut: &[(String, String)],
    voters: &[String],
    node: &str,
) -> Option<bool> {
    if voters.is_empty() {
        return None;
    }
    let reach = component(nodes, cut, node);
    let reachable = voters.iter().filter(|v| reach.contains(v.as_str())).count();
    Some(reachable < voters.len() / 2 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn named(cut: &[CutPair]) -> Vec<(String, String)> {
        cut.iter()
            .map(|(a, b)| (format!("n{}", a + 1), format!("n{}", b + 1)))
            .collect()
    }

    #[test]
    fn an_isolated_node_is_cut_from_every_other() {
        assert_eq!(split(3, &[1]), vec![(0, 1), (1, 2)]);
        assert_eq!(split(5, &[0, 4]).len(), 6);
    }

    #[test]
    fn a_bridge_of_three_cuts_only_the_outer_pair() {
        assert_eq!(bridge(&[2, 0, 1]), vec![(1, 2)]);
        let five = bridge(&[0, 1, 2, 3, 4]);
        assert_eq!(five, vec![(0, 3), (0, 4), (1, 3), (1, 4)]);
    }

    #[test]
    fn the_minority_side_of_a_split_is_in_a_minority_and_the_majority_is_not() {
        let nodes = names(3);
        let cut = named(&split(3, &[0]));
        assert_eq!(in_minority(&nodes, &cut, &nodes, "n1"), Some(true));
        assert_eq!(in_minority(&nodes, &cut, &nodes, "n2"), Some(false));
        assert_eq!(in_minority(&nodes, &cut, &[], "n1"), None);
    }

    #[test]
    fn nobody_is_in_a_minority_across_a_bridge() {
        let nodes = names(5);
        let cut = named(&bridge(&[0, 1, 2, 3, 4]));
        for n in &nodes {
            assert_eq!(in_minority(&nodes, &cut, &nodes, n), Some(false), "{n}");
        }
    }

    #[test]
    fn minority_counts_the_groups_voters_not_the_cluster() {
        // Five nodes, an R3 group on n1..n3: the two-node side n1,n2 holds two of its three
        // voters, a majority of the group although a minority of the cluster.
        let nodes = names(5);
        let voters: Vec<String> = names(3);
        let cut = named(&split(5, &[0, 1]));
        assert_eq!(in_minority(&nodes, &cut, &voters, "n1"), Some(false));
        assert_eq!(in_minority(&nodes, &cut, &voters, "n4"), Some(true));
    }
}
