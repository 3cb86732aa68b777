//! The list algebra of the list commands, without I/O: each command reads the whole list,
//! computes the new one here, and writes it whole (see `lists.rs`). Indexes follow
//! redis-server 7.0 (`t_list.c`): negative ones count from the tail, ranges are clamped.

/// Which end of a list a command works on (LEFT is the head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

pub type List = Vec<Vec<u8>>;

/// LPUSH / RPUSH: each item in turn at `end` (so LPUSH a b c leaves c first).
pub fn push(list: &mut List, end: End, items: impl IntoIterator<Item = Vec<u8>>) {
    match end {
        End::Right => list.extend(items),
        End::Left => {
            let mut front: List = items.into_iter().collect();
            front.reverse();
            front.append(list);
            *list = front;
        }
    }
}

/// LPOP / RPOP: up to `count` items from `end`, in the order they are popped.
pub fn pop(list: &mut List, end: End, count: usize) -> List {
    let n = count.min(list.len());
    match end {
        End::Left => list.drain(..n).collect(),
        End::Right => {
            let mut popped = list.split_off(list.len() - n);
            popped.reverse();
            popped
        }
    }
}

/// LRANGE's and LTRIM's clamped range over a list of `len` items: the inclusive indexes kept,
/// or `None` when it is empty.
pub fn range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let start = if start < 0 {
        start.saturating_add(len).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        stop.saturating_add(len)
    } else {
        stop
    };
    if start > stop || start >= len {
        return None;
    }
    Some((start as usize, stop.min(len - 1) as usize))
}

/// LINDEX's and LSET's index: the position, or `None` when out of range.
pub fn index(len: usize, i: i64) -> Option<usize> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let i = if i < 0 { i.checked_add(len)? } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

/// LTRIM: keeps only the clamped range (everything when it is empty and nothing is kept).
pub fn trim(list: &mut List, start: i64, stop: i64) {
    match range(list.len(), start, stop) {
        Some((a, b)) => {
            list.truncate(b + 1);
            list.drain(..a);
        }
        None => list.clear(),
    }
}

/// LREM: removes up to |count| items equal to `element`, from the head when count > 0, from
/// the tail when count < 0, all of them when 0. Returns how many were removed.
pub fn remove(list: &mut List, count: i64, element: &[u8]) -> usize {
    let limit = if count == 0 {
        usize::MAX
    } else {
        usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
    };
    let mut removed = 0;
    let mut keep = |item: &Vec<u8>| {
        if removed < limit && item == element {
            removed += 1;
            false
        } else {
            true
        }
    };
    if count < 0 {
        let mut kept: List = list.drain(..).rev().filter(|i| keep(i)).collect();
        kept.reverse();
        *list = kept;
    } else {
        list.retain(|i| keep(i));
    }
    removed
}

/// LINSERT: puts `element` before or after the first `pivot`; `false` when there is none.
pub fn insert(list: &mut List, before: bool, pivot: &[u8], element: Vec<u8>) -> bool {
    match list.iter().position(|i| i == pivot) {
        Some(at) => {
            list.insert(if before { at } else { at + 1 }, element);
            true
        }
        None => false,
    }
}

/// LPOS: the indexes of the matches of `element`, skipping the first |rank| - 1 matches, from
/// the tail when rank < 0; at most `count` of them (0: all), looking at no more than `maxlen`
/// items (0: all). `rank` is never 0 (refused when parsed).
pub fn positions(
    list: &List,
    element: &[u8],
    rank: i64,
    count: usize,
    maxlen: usize,
) -> Vec<usize> {
    let skip = usize::try_from(rank.unsigned_abs().saturating_sub(1)).unwrap_or(usize::MAX);
    // Redis 7.0 negates i64::MIN without a check and the rank stays negative, so every match
    // counts from the first one: the same as -1.
    let skip = if rank == i64::MIN { 0 } else { skip };
    let scanned = if maxlen == 0 {
        list.len()
    } else {
        maxlen.min(list.len())
    };
    let indexes: Box<dyn Iterator<Item = usize>> = if rank < 0 {
        Box::new((0..list.len()).rev().take(scanned))
    } else {
        Box::new((0..list.len()).take(scanned))
    };
    let wanted = if count == 0 { usize::MAX } else { count };
    indexes
        .filter(|&i| list[i] == element)
        .skip(skip)
        .take(wanted)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(items: &[&str]) -> List {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn pushes_and_pops_at_both_ends() {
        let mut list = l(&["x"]);
        push(&mut list, End::Left, l(&["a", "b", "c"]));
        assert_eq!(list, l(&["c", "b", "a", "x"]));
        push(&mut list, End::Right, l(&["y", "z"]));
        assert_eq!(list, l(&["c", "b", "a", "x", "y", "z"]));
        assert_eq!(pop(&mut list, End::Left, 2), l(&["c", "b"]));
        assert_eq!(pop(&mut list, End::Right, 2), l(&["z", "y"]));
        assert_eq!(pop(&mut list, End::Right, 10), l(&["x", "a"]));
        assert!(list.is_empty());
        assert!(pop(&mut list, End::Left, 1).is_empty());
    }

    #[test]
    fn ranges_clamp_as_redis_does() {
        assert_eq!(range(5, 0, -1), Some((0, 4)));
        assert_eq!(range(5, -100, 100), Some((0, 4)));
        assert_eq!(range(5, -2, -1), Some((3, 4)));
        assert_eq!(range(5, 3, 1), None);
        assert_eq!(range(5, 5, 10), None);
        assert_eq!(range(5, 0, -6), None);
        assert_eq!(range(0, 0, -1), None);
        assert_eq!(range(5, i64::MIN, i64::MAX), Some((0, 4)));
        assert_eq!(range(5, i64::MAX, i64::MIN), None);
    }

    #[test]
    fn indexes_count_from_either_end() {
        assert_eq!(index(3, 0), Some(0));
        assert_eq!(index(3, -1), Some(2));
        assert_eq!(index(3, -3), Some(0));
        assert_eq!(index(3, -4), None);
        assert_eq!(index(3, 3), None);
        assert_eq!(index(3, i64::MIN), None);
        assert_eq!(index(0, 0), None);
    }

    #[test]
    fn trim_keeps_the_range_or_empties_the_list() {
        let mut list = l(&["a", "b", "c", "d"]);
        trim(&mut list, 1, -2);
        assert_eq!(list, l(&["b", "c"]));
        trim(&mut list, 5, 10);
        assert!(list.is_empty());
    }

    #[test]
    fn remove_counts_from_the_head_the_tail_or_everywhere() {
        let base = l(&["a", "b", "a", "c", "a"]);
        let mut list = base.clone();
        assert_eq!(remove(&mut list, 2, b"a"), 2);
        assert_eq!(list, l(&["b", "c", "a"]));
        let mut list = base.clone();
        assert_eq!(remove(&mut list, -2, b"a"), 2);
        assert_eq!(list, l(&["a", "b", "c"]));
        let mut list = base.clone();
        assert_eq!(remove(&mut list, 0, b"a"), 3);
        assert_eq!(list, l(&["b", "c"]));
        let mut list = base;
        assert_eq!(remove(&mut list, i64::MIN, b"zz"), 0);
    }

    #[test]
    fn insert_finds_the_first_pivot() {
        let mut list = l(&["a", "b", "a"]);
        assert!(insert(&mut list, true, b"a", b"x".to_vec()));
        assert!(insert(&mut list, false, b"b", b"y".to_vec()));
        assert_eq!(list, l(&["x", "a", "b", "y", "a"]));
        assert!(!insert(&mut list, true, b"zz", b"q".to_vec()));
    }

    #[test]
    fn positions_follow_rank_count_and_maxlen() {
        let list = l(&["a", "b", "c", "1", "2", "3", "c", "c"]);
        assert_eq!(positions(&list, b"c", 1, 1, 0), vec![2]);
        assert_eq!(positions(&list, b"c", 2, 1, 0), vec![6]);
        assert_eq!(positions(&list, b"c", -1, 1, 0), vec![7]);
        assert_eq!(positions(&list, b"c", 1, 0, 0), vec![2, 6, 7]);
        assert_eq!(positions(&list, b"c", -1, 2, 0), vec![7, 6]);
        assert_eq!(positions(&list, b"c", 1, 0, 3), vec![2]);
        assert_eq!(positions(&list, b"c", -1, 0, 1), vec![7]);
        assert_eq!(positions(&list, b"c", i64::MIN, 0, 0), vec![7, 6, 2]);
        assert!(positions(&list, b"zz", 1, 0, 0).is_empty());
        assert!(positions(&list, b"c", 9, 1, 0).is_empty());
    }
}
