//! Runs beyond one process: `merge` combines the shard folders of a sharded run into
//! one run folder, `launch` runs N shards on this machine against one shared target
//! (`kabench run --shards N`), and `manifest` prints a Kubernetes Indexed Job or a
//! Slurm array that runs the shards and the merge on a cluster. The shards themselves
//! are plain `kabench run --shard` processes; nothing here coordinates them while they
//! run (they keep in step by the start barrier alone).

pub mod launch;
pub mod manifest;
pub mod merge;
