//! The `numa` feature: placement on hwloc synthetic topologies with 2 and 4 NUMA nodes,
//! then real binding of arenas on this machine, checked through the arena's report and
//! independently through `get_mempolicy(2)`.

#![cfg(feature = "numa")]

use hwlocality::Topology;
use ringfort_pool::numa::{check_node, node_for_cpu, node_for_policy, nodes};
use ringfort_pool::{
    Arena, BackingPref, Growth, NumaBinding, NumaPolicy, PoolConfig, PoolError, Registration,
    SizeClass,
};

// ---------------------------------------------------------------------------------------
// Placement on synthetic topologies
// ---------------------------------------------------------------------------------------

/// A topology from an hwloc synthetic description (hwloc 2.x syntax: `[numa]` attaches a
/// NUMA node to each object of the level before it).
fn synthetic(description: &str) -> Topology {
    Topology::builder()
        .from_synthetic(description)
        .unwrap_or_else(|e| panic!("bad synthetic description {description:?}: {e}"))
        .build()
        .unwrap_or_else(|e| panic!("cannot build synthetic topology {description:?}: {e}"))
}

/// Asserts that every CPU `0..expected.len()` maps to `expected[cpu]`, and that the next
/// CPU index is an error naming it and the CPU range `cpus`.
fn assert_placement(topology: &Topology, expected: &[u32], cpus: &str) {
    for (cpu, &node) in expected.iter().enumerate() {
        assert_eq!(
            node_for_cpu(topology, cpu).unwrap(),
            node,
            "CPU {cpu} should be on node {node}"
        );
    }
    let missing = expected.len();
    let err = node_for_cpu(topology, missing).unwrap_err();
    assert!(matches!(err, PoolError::Numa(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("NUMA binding failed: CPU {missing} does not exist in this topology (CPUs {cpus})")
    );
}

fn numa_err(result: Result<impl std::fmt::Debug, PoolError>) -> String {
    match result {
        Err(PoolError::Numa(msg)) => msg,
        other => panic!("expected PoolError::Numa, got {other:?}"),
    }
}

#[test]
fn two_nodes_one_per_package() {
    let t = synthetic("pack:2 [numa] core:2 pu:1");
    assert_eq!(nodes(&t), [0, 1]);
    assert_placement(&t, &[0, 0, 1, 1], "0-3");
}

#[test]
fn two_nodes_legacy_numa_level() {
    // The hwloc 1.x style, a NUMA level of its own, is still accepted.
    let t = synthetic("pack:2 numa:1 core:2 pu:1");
    assert_eq!(nodes(&t), [0, 1]);
    assert_placement(&t, &[0, 0, 1, 1], "0-3");
}

#[test]
fn two_nodes_with_interleaved_hyperthread_numbering() {
    // Like most x86 servers: the second hyperthread of each core is numbered after all
    // first ones, so node 0 holds CPUs 0,1,4,5 and node 1 holds 2,3,6,7.
    let t = synthetic("pack:2 [numa] core:2 pu:2(indexes=0,4,1,5,2,6,3,7)");
    assert_eq!(nodes(&t), [0, 1]);
    assert_placement(&t, &[0, 0, 1, 1, 0, 0, 1, 1], "0-7");
}

#[test]
fn four_nodes_sub_numa_clustering() {
    // Two packages, each split into two L3 domains with their own memory (SNC-2).
    let t = synthetic("pack:2 l3:2 [numa] core:2 pu:2");
    assert_eq!(nodes(&t), [0, 1, 2, 3]);
    let expected: Vec<u32> = (0..16).map(|cpu| cpu / 4).collect();
    assert_placement(&t, &expected, "0-15");
}

#[test]
fn four_nodes_legacy_numa_level() {
    let t = synthetic("numa:4 core:2 pu:1");
    assert_eq!(nodes(&t), [0, 1, 2, 3]);
    assert_placement(&t, &[0, 0, 1, 1, 2, 2, 3, 3], "0-7");
}

#[test]
fn machine_wide_memory_node_is_not_local_to_any_cpu() {
    // Node 2 hangs off the whole machine (like CXL or a far memory tier): every CPU is
    // inside its CPU set, but each CPU's local node is its package's.
    let t = synthetic("[numa] pack:2 [numa] core:2 pu:1");
    assert_eq!(nodes(&t), [0, 1, 2]);
    assert_placement(&t, &[0, 0, 1, 1], "0-3");
    assert_eq!(check_node(&t, 2).unwrap(), 2);
}

#[test]
fn sparse_node_indexes() {
    let t = synthetic("pack:2 [numa(indexes=3,1)] core:1 pu:1");
    assert_eq!(nodes(&t), [1, 3]);
    assert_placement(&t, &[3, 1], "0-1");
    assert_eq!(check_node(&t, 1).unwrap(), 1);
    assert_eq!(check_node(&t, 3).unwrap(), 3);
    assert_eq!(
        numa_err(check_node(&t, 0)),
        "NUMA node 0 does not exist in this topology (nodes 1,3)"
    );
}

#[test]
fn absurd_indexes_are_errors_not_panics() {
    let t = synthetic("pack:2 [numa] core:2 pu:1");
    let msg = numa_err(node_for_cpu(&t, usize::MAX));
    assert!(
        msg.starts_with(&format!("CPU {} does not exist", usize::MAX)),
        "{msg}"
    );
    let msg = numa_err(check_node(&t, u32::MAX));
    assert!(
        msg.starts_with(&format!("NUMA node {} does not exist", u32::MAX)),
        "{msg}"
    );
}

#[test]
fn policies_resolve_on_four_nodes() {
    let t = synthetic("pack:2 l3:2 [numa] core:2 pu:2");
    let not_asked = || -> Result<usize, PoolError> { panic!("current CPU asked for") };
    assert_eq!(
        node_for_policy(&t, NumaPolicy::Local, || Ok(9)).unwrap(),
        Some(2)
    );
    assert_eq!(
        node_for_policy(&t, NumaPolicy::Local, || Ok(0)).unwrap(),
        Some(0)
    );
    assert_eq!(
        node_for_policy(&t, NumaPolicy::Cpu(13), not_asked).unwrap(),
        Some(3)
    );
    assert_eq!(
        node_for_policy(&t, NumaPolicy::Node(3), not_asked).unwrap(),
        Some(3)
    );
    assert_eq!(
        node_for_policy(&t, NumaPolicy::FirstTouch, not_asked).unwrap(),
        None
    );
    assert_eq!(
        numa_err(node_for_policy(&t, NumaPolicy::Node(4), not_asked)),
        "NUMA node 4 does not exist in this topology (nodes 0-3)"
    );
    assert_eq!(
        numa_err(node_for_policy(&t, NumaPolicy::Cpu(16), not_asked)),
        "CPU 16 does not exist in this topology (CPUs 0-15)"
    );
    assert_eq!(
        numa_err(node_for_policy(&t, NumaPolicy::Local, || Ok(99))),
        "CPU 99 does not exist in this topology (CPUs 0-15)"
    );
    let failing = || Err(PoolError::Numa("no idea".into()));
    assert_eq!(
        numa_err(node_for_policy(&t, NumaPolicy::Local, failing)),
        "no idea"
    );
}

// ---------------------------------------------------------------------------------------
// Real binding on this machine
// ---------------------------------------------------------------------------------------

fn small_config(numa: NumaPolicy, growth: Growth) -> PoolConfig {
    PoolConfig {
        classes: vec![SizeClass {
            size: 4096,
            count: 16,
        }],
        growth,
        backing: BackingPref::SmallPages,
        registration: Registration::Off,
        numa,
    }
}

fn arena(numa: NumaPolicy) -> Result<Arena, PoolError> {
    Arena::new(small_config(numa, Growth::Fixed))
}

fn this_machine() -> Topology {
    Topology::new().expect("hwloc cannot read this machine's topology")
}

/// The kernel's memory policy (`get_mempolicy(MPOL_F_ADDR)`) of the page at `addr`: the
/// mode and the nodes of its node mask.
fn kernel_policy(addr: *const u8) -> (i32, Vec<u32>) {
    const MPOL_F_ADDR: libc::c_ulong = 2;
    const MASK_WORDS: usize = 16; // 1024 nodes, more than any kernel's MAX_NUMNODES
    let mut mode: libc::c_int = -1;
    let mut mask = [0 as libc::c_ulong; MASK_WORDS];
    let bits = libc::c_ulong::BITS as usize;
    // SAFETY: `mode` and `mask` are live, writable and as large as the arguments say
    // (`MASK_WORDS * bits` node bits); with MPOL_F_ADDR the kernel only looks `addr` up
    // in this process's mappings and reads no memory through it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut mode as *mut libc::c_int,
            mask.as_mut_ptr(),
            (MASK_WORDS * bits) as libc::c_ulong,
            addr,
            MPOL_F_ADDR,
        )
    };
    assert_eq!(rc, 0, "get_mempolicy: {}", std::io::Error::last_os_error());
    let nodes = (0..MASK_WORDS * bits)
        .filter(|&i| mask[i / bits] & (1 << (i % bits)) != 0)
        .map(|i| i as u32)
        .collect();
    (mode & 0xff, nodes)
}

/// Asserts that `arena`'s first chunk is bound to `node` and its pages were read back on
/// that node only, both in the report and in the kernel's own view of a buffer.
fn assert_bound(arena: &Arena, node: u32) {
    const MPOL_BIND: i32 = 2;
    let report = arena.report();
    assert_eq!(
        report.numa(),
        &NumaBinding::Bound {
            node,
            read_back: Some(vec![node]),
        },
        "report: {report}"
    );
    assert!(
        report.to_string().contains(&format!(
            "numa: bound to node {node} (pages read back on node(s) [{node}])"
        )),
        "{report}"
    );
    let buf = arena.alloc(4096).unwrap();
    assert_eq!(kernel_policy(buf.as_ptr()), (MPOL_BIND, vec![node]));
}

#[test]
fn node_0_binds_and_reads_back() {
    assert!(nodes(&this_machine()).contains(&0));
    assert_bound(&arena(NumaPolicy::Node(0)).unwrap(), 0);
}

#[test]
fn cpu_0_binds_to_its_node() {
    let expected = node_for_cpu(&this_machine(), 0).unwrap();
    assert_bound(&arena(NumaPolicy::Cpu(0)).unwrap(), expected);
}

#[test]
fn local_binds_to_the_creating_threads_node() {
    let machine = this_machine();
    let arena = arena(NumaPolicy::Local).unwrap();
    let NumaBinding::Bound { node, .. } = arena.report().numa().clone() else {
        panic!("Local did not bind: {}", arena.report());
    };
    assert!(nodes(&machine).contains(&node), "node {node}");
    if nodes(&machine) == [0] {
        assert_eq!(node, 0);
    }
    assert_bound(&arena, node);
}

#[test]
fn single_node_machines_still_bind() {
    // On a one-node machine the bind is real (MPOL_BIND to node 0), not skipped; on a
    // bigger one this is the same check for every node.
    for node in nodes(&this_machine()) {
        assert_bound(&arena(NumaPolicy::Node(node)).unwrap(), node);
    }
}

#[test]
fn every_chunk_is_bound() {
    let arena = Arena::new(small_config(
        NumaPolicy::Node(0),
        Growth::Chunks { max_chunks: 2 },
    ))
    .unwrap();
    // Exhaust the first chunk's 16 buffers so a second chunk is mapped.
    let bufs: Vec<_> = (0..17).map(|_| arena.alloc(4096).unwrap()).collect();
    let stats = arena.stats();
    assert_eq!(stats.chunks.len(), 2);
    for chunk in &stats.chunks {
        assert_eq!(
            chunk.numa,
            NumaBinding::Bound {
                node: 0,
                read_back: Some(vec![0]),
            }
        );
    }
    drop(bufs);
}

#[test]
fn missing_node_is_an_error_naming_it() {
    let err = arena(NumaPolicy::Node(99)).err().expect("node 99 accepted");
    assert!(matches!(err, PoolError::Numa(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "NUMA binding failed: NUMA node 99 does not exist in this topology (nodes "
        ),
        "{msg}"
    );
}

#[test]
fn missing_cpu_is_an_error_naming_it() {
    let err = arena(NumaPolicy::Cpu(100_000))
        .err()
        .expect("CPU 100000 accepted");
    assert!(matches!(err, PoolError::Numa(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("NUMA binding failed: CPU 100000 does not exist in this topology (CPUs "),
        "{msg}"
    );
}

#[test]
fn first_touch_does_not_bind() {
    const MPOL_DEFAULT: i32 = 0;
    let arena = arena(NumaPolicy::FirstTouch).unwrap();
    assert_eq!(
        arena.report().numa(),
        &NumaBinding::FirstTouch {
            reason: "first touch was asked for".into(),
        }
    );
    let buf = arena.alloc(4096).unwrap();
    assert_eq!(kernel_policy(buf.as_ptr()).0, MPOL_DEFAULT);
}
