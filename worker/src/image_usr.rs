//! QA's toolchain read from the host's disk, not through FUSE, on a
//! `fuse-overlayfs` host (issue 34): the image's `/usr`, copied once into a
//! volume, mounted read-only over the image's own.
//!
//! On Docker's `fuse-overlayfs` storage driver every file a container reads
//! from its image goes through the FUSE daemon; a warm `go build/vet/test`
//! reads the whole standard library's sources and the compiler's tools, and
//! runs about twice as long as with the same files on the host's own
//! filesystem (BENCHMARKS.md, "QA's toolchain off FUSE"). Toolchains
//! live under `/usr` (Debian's `/usr/lib/go-*`, the official images'
//! `/usr/local/go`, `/usr/local/lib/python*`, `/usr/local/lib/node_modules`),
//! so the worker copies each image's `/usr` once into a named volume
//! (Docker itself copies an image's directory into an empty volume when a
//! container that mounts it there is created) and mounts it read-only, at
//! `/usr`, into QA's containers.
//!
//! What it trusts and changes: the copy is the operator's image, made by
//! Docker from the image's own layers in a container that never starts, and
//! mounted read-only, so no job writes in it and what one job sees the next
//! sees too, as with the image. A QA command that writes under `/usr` (no
//! build or test tool does, and the agents' uid may not in most images) is
//! refused there. The agent's own container keeps the image's `/usr` (an
//! agent may install into an image made writable for it).
//!
//! Off the job's path: a copy is made in the background (at start for
//! each pool's image, or at the first QA of a new image), and a run uses it
//! only once it is whole. No lock, and nothing a stopped worker leaves can
//! block another: each worker copies into a volume of its own
//! (`agentq-usr-{image}-{ulid}`), and once Docker's copy has returned it
//! creates the image's marker (`agentq-usr-{image}`, a volume whose label
//! names the copy). Docker makes a volume name once: the first marker made
//! names the copy every run mounts, and a worker that lost the race removes
//! its own. A run looks at the marker (and its copy) before each use; a
//! marker whose copy is gone is removed, so a new copy can be named. A copy
//! half made (its worker stopped) is named by no marker; it is removed at
//! start, with the copies of images no longer on the host. Its disk: each
//! image's `/usr` once more per host.
//!
//! Only on `fuse-overlayfs` (read at start, [`crate::fuse_root::detect`]):
//! elsewhere the image's files are on the host's filesystem already.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use bollard::{
    models::{ContainerCreateBody, HostConfig, Mount, MountTypeEnum, VolumeCreateOptions},
    query_parameters::{
        CreateContainerOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    },
    Docker,
};

use crate::context::WorkerCtx;

/// Where the copy is mounted, and what of the image it holds.
const TARGET: &str = "/usr";
/// The label naming the image a copy is of (its id).
const LABEL_IMAGE: &str = "agentq.usr.image";

/// The label naming the copy a marker stands for.
const LABEL_COPY: &str = "agentq.usr.copy";
/// A filler container older than this was left by a stopped worker.
const FILLER_STALE: Duration = Duration::from_secs(15 * 60);

/// A copy this process is making, or failed to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Making {
    /// In the background now.
    Filling,
    /// Failed: runs go without (said once, at warn).
    Failed,
}

/// The copies this process is making or failed to make, by image id.
static MAKING: LazyLock<Mutex<HashMap<String, Making>>> = LazyLock::new(Default::default);

/// The `[a-z0-9]` of an image id, at most 32 (a volume name's part).
fn short(image_id: &str) -> String {
    image_id
        .trim_start_matches("sha256:")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect()
}

/// The marker of image `image_id`'s copy: one per image and host.
fn marker_name(image_id: &str) -> String {
    format!("agentq-usr-{}", short(image_id))
}

/// A new copy's volume, this worker's own.
fn copy_name(image_id: &str) -> String {
    format!(
        "agentq-usr-{}-{}",
        short(image_id),
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

/// The read-only mount of a whole copy. Docker's copy on mount is left on:
/// were the volume removed between the look and the container's create
/// (`docker volume prune`), Docker would make it again from the image
/// rather than mount an empty `/usr`.
fn mount_of(volume: &str) -> Mount {
    usr_mount(volume, true)
}

/// Volume `volume` at [`TARGET`].
fn usr_mount(volume: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(TARGET.to_string()),
        source: Some(volume.to_string()),
        typ: Some(MountTypeEnum::VOLUME),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// Mounts the copy of `body`'s image's `/usr` into `body` when it is whole
/// (see the module docs); begins making it, in the background, when it is
/// not. On a host not on `fuse-overlayfs`, does nothing.
pub(crate) async fn apply(ctx: &WorkerCtx, body: &mut ContainerCreateBody) {
    if !ctx.fuse_rootfs {
        return;
    }
    let Some(image) = body.image.clone() else {
        return;
    };
    let Some(volume) = whole_or_begin(&ctx.docker, &image).await else {
        return;
    };
    if let Some(hc) = body.host_config.as_mut() {
        hc.mounts
            .get_or_insert_with(Vec::new)
            .push(mount_of(&volume));
    }
}

/// The whole copy of `image`'s `/usr`, or `None` (then its making is
/// begun, unless it is under way or failed in this process).
async fn whole_or_begin(docker: &Docker, image: &str) -> Option<String> {
    let id = docker.inspect_image(image).await.ok()?.id?;
    if let Some(copy) = whole(docker, &id).await {
        return Some(copy);
    }
    {
        let mut making = MAKING.lock().ok()?;
        if making.contains_key(&id) {
            return None;
        }
        making.insert(id.clone(), Making::Filling);
    }
    let docker = docker.clone();
    tokio::spawn(async move {
        let began = std::time::Instant::now();
        let failed = match fill(&docker, &id).await {
            Ok(copy) => {
                tracing::info!(
                    volume = copy,
                    ms = began.elapsed().as_millis() as u64,
                    "the image's /usr is on a volume: QA reads its toolchain from there"
                );
                false
            }
            Err(e) => {
                tracing::warn!(image = id, error = %e, "cannot copy the image's /usr into a volume; QA reads it through fuse-overlayfs (slower)");
                true
            }
        };
        if let Ok(mut making) = MAKING.lock() {
            if failed {
                making.insert(id, Making::Failed);
            } else {
                making.remove(&id);
            }
        }
    });
    None
}

/// The copy image `id`'s marker names, if both exist.
async fn whole(docker: &Docker, id: &str) -> Option<String> {
    let marker = docker.inspect_volume(&marker_name(id)).await.ok()?;
    let copy = marker.labels.get(LABEL_COPY)?.clone();
    if docker.inspect_volume(&copy).await.is_err() {
        // Its copy is gone (`docker volume rm`, or a clean-up that read the
        // volumes before the marker was made): the marker goes, so that a
        // new copy can be named.
        let none = None::<bollard::query_parameters::RemoveVolumeOptions>;
        let _ = docker.remove_volume(&marker_name(id), none).await;
        return None;
    }
    Some(copy)
}

/// Makes a copy of image `id`'s `/usr` and its marker (see the module
/// docs); the copy the marker names (this one, or another worker's made
/// first).
async fn fill(docker: &Docker, id: &str) -> anyhow::Result<String> {
    let copy = copy_name(id);
    let labels = HashMap::from([(LABEL_IMAGE.to_string(), id.to_string())]);
    docker
        .create_volume(VolumeCreateOptions {
            name: Some(copy.clone()),
            driver: Some("local".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await?;
    // Docker copies the image's `/usr` into the empty volume as it creates
    // the container, before the create returns; the container never starts.
    let filler = format!("{copy}-fill");
    let body = ContainerCreateBody {
        image: Some(id.to_string()),
        cmd: Some(vec!["/agentq-never-started".to_string()]),
        network_disabled: Some(true),
        labels: Some(labels.clone()),
        host_config: Some(HostConfig {
            mounts: Some(vec![usr_mount(&copy, false)]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::new().name(&filler).build();
    let rm = RemoveContainerOptionsBuilder::new().force(true).build();
    let none = None::<bollard::query_parameters::RemoveVolumeOptions>;
    if let Err(e) = docker.create_container(Some(opts), body).await {
        let _ = docker.remove_container(&filler, Some(rm)).await;
        let _ = docker.remove_volume(&copy, none).await;
        return Err(e.into());
    }
    // The marker, made while the filler still holds the copy (so the copy is
    // never unheld and unnamed, which the clean-up would take for a half
    // made one). Docker returns the marker as it is when it exists.
    let mut marker_labels = labels;
    marker_labels.insert(LABEL_COPY.to_string(), copy.clone());
    let marker = VolumeCreateOptions {
        name: Some(marker_name(id)),
        driver: Some("local".into()),
        labels: Some(marker_labels),
        ..Default::default()
    };
    let mut named = docker.create_volume(marker.clone()).await.map(|v| v.labels);
    if let Ok(labels) = &named {
        let other = labels.get(LABEL_COPY).filter(|c| **c != copy);
        if let Some(other) = other {
            if docker.inspect_volume(other).await.is_err() {
                // A marker whose copy is gone: ours replaces it.
                let _ = docker.remove_volume(&marker_name(id), none.clone()).await;
                named = docker.create_volume(marker).await.map(|v| v.labels);
            }
        }
    }
    let _ = docker.remove_container(&filler, Some(rm)).await;
    let named = named?.get(LABEL_COPY).cloned().unwrap_or_default();
    if named != copy {
        // Another worker's copy was first.
        let _ = docker.remove_volume(&copy, none).await;
    }
    Ok(named)
}

/// Begins the copies of every pool's image (at start), and removes what is
/// left of others (see [`clean`]).
pub(crate) fn prepare(ctx: &Arc<WorkerCtx>) {
    if !ctx.fuse_rootfs {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let images: HashSet<String> = ctx
            .cfg
            .agent_table()
            .names()
            .iter()
            .map(|pool| ctx.cfg.image_for(pool).to_string())
            .collect();
        clean(&ctx.docker).await;
        for image in &images {
            whole_or_begin(&ctx.docker, image).await;
        }
    });
}

/// Removes fillers left by stopped workers (older than [`FILLER_STALE`]),
/// the markers of images no longer on the host, and the copies no marker
/// names (a copy being made is held by its filler: Docker refuses to remove
/// it).
async fn clean(docker: &Docker) {
    let filters = HashMap::from([("label", vec![LABEL_IMAGE])]);
    let rm = RemoveContainerOptionsBuilder::new().force(true).build();
    let listed = docker
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    for c in listed {
        if now - c.created.unwrap_or(now) > FILLER_STALE.as_secs() as i64 {
            if let Some(id) = c.id {
                let _ = docker.remove_container(&id, Some(rm.clone())).await;
            }
        }
    }
    let opts = ListVolumesOptionsBuilder::new().filters(&filters).build();
    let Ok(list) = docker.list_volumes(Some(opts)).await else {
        return;
    };
    let vols = list.volumes.unwrap_or_default();
    let none = None::<bollard::query_parameters::RemoveVolumeOptions>;
    let mut named = HashSet::new();
    for v in vols.iter().filter(|v| v.labels.contains_key(LABEL_COPY)) {
        let image = v.labels.get(LABEL_IMAGE).cloned().unwrap_or_default();
        if docker.inspect_image(&image).await.is_ok() {
            named.insert(v.labels[LABEL_COPY].clone());
        } else if docker.remove_volume(&v.name, none.clone()).await.is_ok() {
            tracing::info!(
                volume = v.name,
                "removed the marker of the /usr copy of an image no longer on this host"
            );
        }
    }
    for v in vols.iter().filter(|v| !v.labels.contains_key(LABEL_COPY)) {
        // Looked at again: a marker made since the list may name it.
        let image = v.labels.get(LABEL_IMAGE).cloned().unwrap_or_default();
        let named_now = docker
            .inspect_volume(&marker_name(&image))
            .await
            .is_ok_and(|m| m.labels.get(LABEL_COPY) == Some(&v.name));
        if !named.contains(&v.name) && !named_now {
            match docker.remove_volume(&v.name, none.clone()).await {
                Ok(()) => tracing::info!(
                    volume = v.name,
                    "removed a copy of an image's /usr no marker names"
                ),
                Err(e) => {
                    tracing::debug!(volume = v.name, error = %e, "cannot remove a copy of an image's /usr no marker names (in use?)")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_its_workers_own_and_the_marker_one_per_image() {
        let id = "sha256:0123456789abcdef0123456789abcdef0123";
        assert_eq!(
            marker_name(id),
            "agentq-usr-0123456789abcdef0123456789abcdef"
        );
        let (a, b) = (copy_name(id), copy_name(id));
        assert!(a.starts_with(&format!("{}-", marker_name(id))), "{a}");
        assert_ne!(a, b);
        assert_ne!(marker_name(id), marker_name("sha256:fedcba98"));
    }

    #[test]
    fn a_whole_copy_is_mounted_read_only_over_usr() {
        let m = mount_of("agentq-usr-x");
        assert_eq!(m.target.as_deref(), Some("/usr"));
        assert_eq!(m.source.as_deref(), Some("agentq-usr-x"));
        assert_eq!(m.read_only, Some(true));
    }
}
