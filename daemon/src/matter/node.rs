//! The Matter thread: the node hearth shows controllers (the root endpoint
//! and an Aggregator, endpoint 1, for the bridged devices to come), run by
//! rs-matter on a local executor. It must never block on tokio, and never
//! be reached but through its command channel.

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};

use embassy_futures::select::{Either4, select4};
use rs_matter::crypto::{Crypto, default_crypto};
use rs_matter::dm::clusters::desc::{self, ClusterHandler as _};
use rs_matter::dm::clusters::net_comm::DummyNetworks;
use rs_matter::dm::devices::DEV_TYPE_AGGREGATOR;
use rs_matter::dm::devices::test::{DAC_PRIVKEY, TEST_DEV_ATT};
use rs_matter::dm::networks::unix::UnixNetifs;
use rs_matter::dm::{Async, DataModel, Dataver, Endpoint, Node, endpoints};
use rs_matter::error::Error;
use rs_matter::im::{InteractionModel, InteractionModelState};
use rs_matter::respond::DefaultResponder;
use rs_matter::sc::pase::CommWindowState;
use rs_matter::transport::exchange::MatterBuffers;
use rs_matter::transport::network::NoNetwork;
use rs_matter::utils::init::InitMaybeUninit;
use rs_matter::{Matter, clusters, devices, root_endpoint};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::kv::SealedKv;
use super::{Command, PAIRING_WINDOW_SECS, Setup, Status};
use crate::store::Store;

/// The Aggregator's endpoint; bridged devices get ids above it.
pub const AGGREGATOR: u16 = 1;

const NODE: Node<'static> = Node {
    endpoints: &[
        root_endpoint!(eth),
        Endpoint::new(
            AGGREGATOR,
            devices!(DEV_TYPE_AGGREGATOR),
            clusters!(desc::DescHandler::CLUSTER),
        ),
    ],
};

/// What the thread is handed.
pub(super) struct Parts {
    pub store: Arc<Mutex<Store>>,
    pub setup: Setup,
    pub socket: UdpSocket,
    pub commands: mpsc::Receiver<Command>,
    pub stop: CancellationToken,
}

fn data_model<'a>(mut rand: impl rs_matter::crypto::Rng + Copy) -> impl DataModel + 'a {
    (
        NODE,
        endpoints::EthSysHandlerBuilder::new()
            .netif_diag(&UnixNetifs)
            .build(rand)
            .chain(
                |e, c| e == AGGREGATOR && c == desc::DescHandler::CLUSTER.id,
                Async(desc::DescHandler::new_aggregator(Dataver::new_rand(&mut rand)).adapt()),
            ),
    )
}

/// Runs the node until `stop`; blocks the calling thread.
pub(super) fn run(parts: Parts) -> Result<(), String> {
    let info = super::device_info();
    let port = parts.socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let comm = parts.setup.comm_data();
    // rs-matter's state is large: built in place on the heap, not on the
    // stack.
    let mut matter = Box::<Matter<'_>>::new_uninit();
    let matter: &Matter<'_> = matter.init_with(Matter::init(&info, comm, &TEST_DEV_ATT, port));
    let mut buffers = Box::<MatterBuffers>::new_uninit();
    let buffers: &MatterBuffers = buffers.init_with(MatterBuffers::init());
    let state = Box::new(InteractionModelState::<DummyNetworks>::new(DummyNetworks));

    let crypto = default_crypto(rand::rng(), DAC_PRIVKEY);
    let rand = crypto.rand().map_err(err)?;
    let kv = matter.kv(SealedKv::new(parts.store));
    matter.startup(&kv).map_err(err)?;
    let im = InteractionModel::new(matter, &crypto, buffers, data_model(rand), &kv, &*state);
    let responder = DefaultResponder::new(&im);
    let socket = async_io::Async::new(parts.socket).map_err(|e| e.to_string())?;
    let mut commands = parts.commands;
    let stop = parts.stop;
    // The devices to bridge. Their endpoints join the node in a later
    // step; until then they are kept and counted.
    let mut bridged: Vec<(u16, super::bridge::Bridged)> = Vec::new();

    let control = async {
        loop {
            let command = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok::<(), Error>(()),
                command = commands.recv() => command,
            };
            match command {
                None => return Ok(()),
                Some(Command::OpenPairing(reply)) => {
                    let result = match matter.comm_window_state() {
                        // Already open: the owner's codes stay the same.
                        CommWindowState::Open { .. } => Ok(()),
                        CommWindowState::Closed => im
                            .open_basic_comm_window(PAIRING_WINDOW_SECS)
                            .map_err(|e| e.to_string()),
                    };
                    let _ = reply.send(result);
                }
                Some(Command::Bridge(set)) => bridged = set,
                Some(Command::Status(reply)) => {
                    let fabrics = matter.with_state(|s| s.fabrics.iter().count());
                    let pairing_open = matches!(matter.comm_window_state(), CommWindowState::Open { .. });
                    let _ = reply.send(Status {
                        fabrics,
                        bridged: bridged.len(),
                        pairing_open,
                        port: 0,
                    });
                }
            }
        }
    };

    let result = async_io::block_on(async {
        im.startup().await?;
        match select4(
            matter.run(&crypto, &socket, &socket, NoNetwork),
            responder.run::<4, 4>(),
            im.run(),
            control,
        )
        .await
        {
            Either4::First(r) | Either4::Second(r) | Either4::Third(r) | Either4::Fourth(r) => r,
        }
    });
    result.map_err(err)
}

fn err(e: Error) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole stack starts on the sealed store, answers, opens pairing
    /// (twice is once), and stops when told.
    #[test]
    fn the_node_runs_opens_pairing_and_stops() {
        let (_dir, store) = crate::matter::kv::tests::store();
        let setup = Setup::load_or_create(&mut store.lock().unwrap()).unwrap();
        let socket = UdpSocket::bind("[::1]:0").unwrap();
        let (tx, rx) = mpsc::channel(4);
        let stop = CancellationToken::new();
        let parts = Parts {
            store: store.clone(),
            setup,
            socket,
            commands: rx,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .stack_size(crate::matter::THREAD_STACK)
            .spawn(move || run(parts))
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let status = || async {
                let (reply, answer) = tokio::sync::oneshot::channel();
                tx.send(Command::Status(reply)).await.unwrap();
                answer.await.unwrap()
            };
            let before = status().await;
            assert_eq!(
                (before.fabrics, before.pairing_open, before.bridged),
                (0, false, 0)
            );
            for _ in 0..2 {
                let (reply, answer) = tokio::sync::oneshot::channel();
                tx.send(Command::OpenPairing(reply)).await.unwrap();
                answer.await.unwrap().unwrap();
            }
            assert!(status().await.pairing_open);
        });
        stop.cancel();
        thread.join().unwrap().unwrap();
        store.lock().unwrap().verify_sealed().unwrap();
    }
}
