//! A cluster replica's calls split by hash slot: a script's keys must share one slot there,
//! so a batch goes per slot, or per master as one pipeline of its slots' requests.

use super::*;

/// The master a `MOVED` reply names (`host:port`).
fn moved_to(reply: &Value) -> Option<String> {
    match reply {
        Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::Moved) => {
            e.details()?.split_whitespace().nth(1).map(str::to_owned)
        }
        _ => None,
    }
}

/// Items grouped by slot: (slot, its items).
type SlotGroups<T> = Vec<(u16, Vec<T>)>;

/// One slot's request in [`Node::per_master`].
pub enum SlotRequest {
    /// A transaction (an atomic pipeline): its answer is `EXEC`'s, the replies of its commands.
    Transaction(redis::Pipeline),
    /// One `EVALSHA` of the script whose source is `code`: its answer is its reply. A
    /// master's pipeline loads each such script first, so that a master that never ran it (or
    /// lost its script cache) answers at once instead of `NOSCRIPT`, which would send every
    /// slot of the batch alone through the cluster client.
    Script {
        eval: redis::Cmd,
        code: &'static str,
    },
}

impl Node {
    /// Runs `call` over `items`: on a server once for all of them, on a cluster once per hash
    /// slot (the slot of the key `key_of` names) for that slot's items, all at once, since a
    /// cluster refuses a script whose keys span slots. One answer per call, in no set order.
    pub async fn per_slot_groups<T, K, R, Fut>(
        &self,
        items: &[T],
        key_of: impl Fn(&T) -> &K,
        call: impl Fn(Vec<T>) -> Fut,
    ) -> Result<Vec<R>, NodeError>
    where
        T: Clone,
        K: AsRef<[u8]> + ?Sized,
        Fut: Future<Output = Result<R, NodeError>>,
    {
        if !self.is_cluster() {
            return Ok(vec![call(items.to_vec()).await?]);
        }
        let mut groups: std::collections::BTreeMap<u32, Vec<T>> = Default::default();
        for item in items {
            let slot = quorumd_core::layout::key_slot(key_of(item).as_ref());
            groups.entry(slot).or_default().push(item.clone());
        }
        futures::future::try_join_all(groups.into_values().map(call)).await
    }

    /// [`Node::per_slot`] for calls that answer a result per item: on a cluster, a slot's call
    /// that fails as a whole (its master down, a timeout) fails only that slot's items, each
    /// with the call's error, so the keys of the other slots still count on this replica. When
    /// every slot's call failed, so does the whole, as on a server.
    pub async fn per_slot_each<T, K, R, Fut>(
        &self,
        items: &[T],
        key_of: impl Fn(&T) -> &K,
        call: impl Fn(Vec<T>) -> Fut,
    ) -> Result<Vec<Result<R, NodeError>>, NodeError>
    where
        T: Clone,
        K: AsRef<[u8]> + ?Sized,
        Fut: Future<Output = Result<Vec<Result<R, NodeError>>, NodeError>>,
    {
        if !self.is_cluster() {
            return call(items.to_vec()).await;
        }
        let failed_groups = std::sync::atomic::AtomicUsize::new(0);
        let groups = std::sync::atomic::AtomicUsize::new(0);
        let first_error = Mutex::new(None);
        let answers = self
            .per_slot(items, key_of, |group: Vec<T>| {
                let n = group.len();
                groups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let answer = call(group);
                let (failed_groups, first_error) = (&failed_groups, &first_error);
                async move {
                    Ok(answer.await.unwrap_or_else(|e| {
                        failed_groups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert_with(|| e.clone());
                        (0..n).map(|_| Err(e.clone())).collect()
                    }))
                }
            })
            .await?;
        let first_error = first_error.into_inner().unwrap_or_else(|p| p.into_inner());
        match first_error {
            Some(e) if failed_groups.into_inner() == groups.into_inner() => Err(e),
            _ => Ok(answers),
        }
    }

    /// [`Node::per_slot_groups`] for calls that answer one result per item, in order: the
    /// answers come back in the order of `items`.
    pub async fn per_slot<T, K, R, Fut>(
        &self,
        items: &[T],
        key_of: impl Fn(&T) -> &K,
        call: impl Fn(Vec<T>) -> Fut,
    ) -> Result<Vec<R>, NodeError>
    where
        T: Clone,
        K: AsRef<[u8]> + ?Sized,
        Fut: Future<Output = Result<Vec<R>, NodeError>>,
    {
        if !self.is_cluster() {
            return call(items.to_vec()).await;
        }
        let indexed: Vec<(usize, T)> = items.iter().cloned().enumerate().collect();
        let answers = self
            .per_slot_groups(
                &indexed,
                |(_, item)| key_of(item),
                |group: Vec<(usize, T)>| {
                    let (at, group): (Vec<usize>, Vec<T>) = group.into_iter().unzip();
                    let answer = call(group);
                    async move {
                        let answers = answer.await?;
                        if answers.len() != at.len() {
                            return Err(NodeError::Protocol(format!(
                                "{} answers for {} items of one slot",
                                answers.len(),
                                at.len()
                            )));
                        }
                        Ok(at.into_iter().zip(answers).collect::<Vec<_>>())
                    }
                },
            )
            .await?;
        let mut placed: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
        for (i, answer) in answers.into_iter().flatten() {
            placed[i] = Some(answer);
        }
        Ok(placed.into_iter().flatten().collect())
    }

    /// [`Node::per_slot`] for calls that are one request per slot, built by `request` and read
    /// by `answer`: on a cluster, the requests of all the slots one master owns (per the shard
    /// table) go in one pipeline on that master's own connection, instead of one request each
    /// through the cluster client; a heal of a shard makes one per slot, 5,461 for a third of
    /// the slots. A slot a master answers `MOVED` for (moved since the table was read) goes
    /// once more to the master named, with the others moved there; a slot whose request fails
    /// otherwise (`ASK` during a migration, the master unreachable) is sent again alone by
    /// `alone`, as [`Node::per_slot`] sends it, through the cluster client. So `request` must
    /// be safe to send twice: a read, or a write that checks it is wanted (a script answering
    /// "not copied" the second time).
    pub async fn per_master<T, K, R, Fut>(
        &self,
        items: &[T],
        key_of: impl Fn(&T) -> &K,
        request: impl Fn(&[T]) -> SlotRequest,
        answer: impl Fn(&[T], Value) -> Result<Vec<R>, NodeError>,
        alone: impl Fn(Vec<T>) -> Fut,
    ) -> Result<Vec<R>, NodeError>
    where
        T: Clone,
        K: AsRef<[u8]> + ?Sized,
        Fut: Future<Output = Result<Vec<R>, NodeError>>,
    {
        let Some(links) = self.masters.as_ref().filter(|_| self.is_cluster()) else {
            return alone(items.to_vec()).await;
        };
        let mut slots: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let slot = quorumd_core::layout::key_slot(key_of(item).as_ref()) as u16;
            slots.entry(slot).or_default().push(i);
        }
        let group = |at: &[usize]| at.iter().map(|&i| items[i].clone()).collect::<Vec<T>>();
        // Slots of a master the table knows as up go to it together; the others alone (a
        // down master's are refused at once there).
        let table = self.shards.snapshot();
        let mut by_master: BTreeMap<&str, SlotGroups<T>> = BTreeMap::new();
        let mut lone: SlotGroups<T> = Vec::new();
        for (slot, at) in &slots {
            match table.iter().find(|s| s.up && !s.suspect && s.owns(*slot)) {
                Some(s) => by_master
                    .entry(s.master.as_str())
                    .or_default()
                    .push((*slot, group(at))),
                None => lone.push((*slot, group(at))),
            }
        }
        let (request, answer) = (&request, &answer);
        // One pipeline to one master: per slot its answers, or the slot again with where a
        // MOVED sent it.
        let send = |addr: String, groups: SlotGroups<T>| async move {
            let mut pipe = redis::pipe();
            // Where each slot's replies are: from `MULTI` to `EXEC`, or the command's.
            let mut spans = Vec::with_capacity(groups.len());
            let mut loaded: Vec<&'static str> = Vec::new();
            for (_, g) in &groups {
                let slot_request = request(g);
                if let SlotRequest::Script { code, .. } = &slot_request
                    && !loaded.contains(code)
                {
                    // Its reply, the script's SHA, lies outside every span.
                    pipe.cmd("SCRIPT").arg("LOAD").arg(*code);
                    loaded.push(code);
                }
                let first = pipe.len();
                match slot_request {
                    SlotRequest::Transaction(tx) => {
                        pipe.cmd("MULTI");
                        for cmd in tx.cmd_iter() {
                            pipe.add_command(cmd.clone());
                        }
                        pipe.cmd("EXEC");
                    }
                    SlotRequest::Script { eval, .. } => {
                        pipe.add_command(eval);
                    }
                }
                spans.push(first..pipe.len());
            }
            let mut replies = links.pipeline(&addr, &pipe).await.ok();
            let mut done = Vec::new();
            let mut again = Vec::new();
            for ((slot, g), span) in groups.into_iter().zip(spans) {
                let Some(replies) = replies.as_mut().filter(|r| r.len() >= span.end) else {
                    again.push((slot, g, None));
                    continue;
                };
                let moved = replies[span.clone()].iter().find_map(moved_to);
                // Moved out: a heal's replies hold its values.
                let last = std::mem::replace(&mut replies[span.end - 1], Value::Nil);
                match answer(&g, last) {
                    Ok(answers) if answers.len() == g.len() => done.push((slot, answers)),
                    _ => again.push((slot, g, moved)),
                }
            }
            (done, again)
        };
        let mut answered: BTreeMap<u16, Vec<R>> = BTreeMap::new();
        let mut round: Vec<(String, SlotGroups<T>)> = by_master
            .into_iter()
            .map(|(addr, groups)| (addr.to_owned(), groups))
            .collect();
        // The slots a master answered MOVED for go once more, together, to the master named
        // (the cluster client would not follow a MOVED inside a transaction: it sees only the
        // `EXEC` reply, `EXECABORT`); anything else goes alone.
        for redirected in [false, true] {
            let batches = futures::future::join_all(
                round.into_iter().map(|(addr, groups)| send(addr, groups)),
            )
            .await;
            let mut moved: BTreeMap<String, SlotGroups<T>> = BTreeMap::new();
            for (done, again) in batches {
                answered.extend(done);
                for (slot, g, to) in again {
                    match to {
                        Some(addr) if !redirected => moved.entry(addr).or_default().push((slot, g)),
                        _ => lone.push((slot, g)),
                    }
                }
            }
            round = moved.into_iter().collect();
        }
        let alone = &alone;
        let retried = futures::future::try_join_all(
            lone.into_iter()
                .map(|(slot, g)| async move { Ok::<_, NodeError>((slot, alone(g).await?)) }),
        )
        .await?;
        answered.extend(retried);
        let mut placed: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
        for (slot, answers) in answered {
            if answers.len() != slots[&slot].len() {
                return Err(NodeError::Protocol(format!(
                    "{} answers for {} items of one slot",
                    answers.len(),
                    slots[&slot].len()
                )));
            }
            for (&i, a) in slots[&slot].iter().zip(answers) {
                placed[i] = Some(a);
            }
        }
        placed
            .into_iter()
            .map(|a| a.ok_or_else(|| NodeError::Protocol("an item of no slot's answer".into())))
            .collect()
    }
}
