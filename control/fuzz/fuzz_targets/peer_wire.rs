//! The peer channel's receiving side (`PeerStream::recv`: the
//! length-delimited framing, the 64 KiB limit, the JSON messages with hex
//! fields) over arbitrary bytes from the peer, then `exchange_hello` (which
//! answers a wrong first message with `Refused`). Every malformed input
//! must end in an error or the end of the stream, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scistream_control::peer::wire::PeerStream;
use tokio::io::AsyncWriteExt;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async {
        for hello in [false, true] {
            let (ours, mut theirs) = tokio::io::duplex(256 * 1024);
            theirs
                .write_all(data)
                .await
                .expect("write into the duplex pipe");
            theirs.shutdown().await.expect("close the peer's side");
            let mut s = PeerStream::new(ours);
            if hello {
                let _ = s.exchange_hello("gwa").await;
                continue;
            }
            for _ in 0..64 {
                match s.recv().await {
                    Ok(Some(m)) => {
                        let _ = (m.kind(), m.uid());
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    });
});
