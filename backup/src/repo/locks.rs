//! The repository's locks: shared for `create`, exclusive for `prune` and `repair`, as empty
//! objects on every slot that answers.

use super::*;
use std::time::Duration;

/// Lock kinds that run alone: no other lock of any kind may be held with one of them.
pub const EXCLUSIVE_LOCKS: [&str; 2] = ["prune", "repair"];

impl Repo {
    /// The repository's locks, from the object listing: (kind, since in Unix s, name).
    pub async fn locks(&self) -> Result<Vec<(String, i64, String)>, Error> {
        Ok(self
            .object_names()
            .await?
            .into_iter()
            .filter_map(|name| {
                let mut parts = name.strip_prefix("lock-")?.splitn(3, '-');
                let kind = parts.next()?.to_owned();
                let since = parts.next()?.parse().ok()?;
                Some((kind, since, name))
            })
            .collect())
    }

    /// Take a lock of `kind`: `create` (any number at once), or one of [`EXCLUSIVE_LOCKS`]
    /// (alone: `prune` deletes what a running backup may be counting on, as restic's
    /// exclusive lock; `repair` moves the slots and rewrites the config a backup writes to). A lock is an
    /// empty object `lock-<kind>-<since>-<id>` on every slot that answers, so any machine
    /// sees it in the listing. Refused while a conflicting lock younger than
    /// [`LOCK_STALE_S`] exists; checked again after taking it, so two that raced both back
    /// off rather than both go on.
    pub async fn lock(&self, kind: &str) -> Result<String, Error> {
        let now = now_s();
        let conflict = |locks: Vec<(String, i64, String)>, own: Option<&str>| {
            locks.into_iter().find(|(k, since, name)| {
                Some(name.as_str()) != own
                    && now - since < LOCK_STALE_S
                    && (EXCLUSIVE_LOCKS.contains(&kind) || EXCLUSIVE_LOCKS.contains(&k.as_str()))
            })
        };
        let refuse = |(k, since, _): (String, i64, String)| {
            Error::Io(format!(
                "the repository is locked by a {k} since {}: wait for it to end; if none is \
                 running (a killed one leaves its lock), run `backup unlock`",
                protocol::market::format_rfc3339(since)
            ))
        };
        if let Some(c) = conflict(self.locks().await?, None) {
            return Err(refuse(c));
        }
        let name = format!("lock-{kind}-{now}-{}", uuid::Uuid::new_v4().simple());
        let puts = self
            .agents
            .iter()
            .enumerate()
            // A slot found silent by the listing just done is not waited for again.
            .filter(|(i, _)| !self.silent[*i].load(Ordering::Relaxed))
            .map(|(i, a)| {
                let name = &name;
                // Empty: it takes no room, so even a contract full to the last byte can be
                // locked, and pruned.
                async move { self.put_paying(i, a, name, Vec::new()).await }
            });
        let stored = join_all(puts).await;
        // Repair is what mends contracts that ended or filled up: when no slot takes its lock
        // it goes on without one (no backup can write to such slots either), after the
        // conflict check above.
        if !stored.iter().any(Result::is_ok) && kind != "repair" {
            return stored
                .into_iter()
                .find_map(Result::err)
                .map_or(Ok(name), Err);
        }
        if let Some(c) = conflict(self.locks().await?, Some(&name)) {
            self.unlock(&name).await;
            return Err(refuse(c));
        }
        Ok(name)
    }

    /// Remove the lock `name` after the work it guarded ended with `result`: after a signal,
    /// within [`UNLOCK_ON_SIGNAL_MS_MAX`].
    pub async fn unlock_after<T>(&self, name: &str, result: &Result<T, Error>) {
        if matches!(result, Err(Error::Interrupted { .. })) {
            let wait = Duration::from_millis(UNLOCK_ON_SIGNAL_MS_MAX);
            let _ = tokio::time::timeout(wait, self.unlock(name)).await;
        } else {
            self.unlock(name).await;
        }
    }

    /// Remove the lock `name` from every slot that answers (best effort: a lock left behind
    /// goes stale, or `backup unlock` removes it).
    pub async fn unlock(&self, name: &str) {
        let deletes = self
            .agents
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.silent[*i].load(Ordering::Relaxed))
            .map(|(i, a)| {
                let contract = &self.config.slots[i].contract;
                async move {
                    let _ = a.delete(contract, name).await;
                }
            });
        join_all(deletes).await;
    }
}
