//! The link handshake: each side sends a hello (node id, generation, a fresh nonce, the
//! cluster id), the acceptor proves it holds the cluster secret with an HMAC over the whole
//! transcript, then the dialer does; nothing else may travel before both proofs.

use aws_lc_rs::hmac;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Links;
use crate::node::{NodeId, NodeIdentity};
use crate::wire::{self, PeerFrame, KIND_HELLO, KIND_PROOF};

const NONCE_LEN: usize = 32;

impl Links {
    fn hello(&self, nonce: &[u8; NONCE_LEN], mac: Option<&[u8]>) -> PeerFrame {
        let mut payload = BytesMut::new();
        put_str(&mut payload, self.identity.node_id.as_str());
        payload.put_u64_le(self.identity.generation);
        payload.put_slice(nonce);
        put_str(&mut payload, &self.cluster_id);
        if let Some(mac) = mac {
            payload.put_slice(mac);
        }
        PeerFrame::new(KIND_HELLO, payload.freeze())
    }

    fn transcript(&self, role: u8, dialer: &NodeIdentity, acceptor: &NodeIdentity, nonces: (&[u8], &[u8])) -> Vec<u8> {
        let mut transcript = b"ringcast-link-v1".to_vec();
        transcript.push(role);
        for identity in [dialer, acceptor] {
            transcript.extend_from_slice(identity.node_id.as_str().as_bytes());
            transcript.push(0);
            transcript.extend_from_slice(&identity.generation.to_le_bytes());
        }
        transcript.extend_from_slice(nonces.0);
        transcript.extend_from_slice(nonces.1);
        transcript.extend_from_slice(self.cluster_id.as_bytes());
        transcript
    }

    pub(super) async fn handshake_as_dialer(
        &self,
        mut stream: TcpStream,
        expected: &NodeId,
    ) -> anyhow::Result<(TcpStream, NodeIdentity)> {
        let nonce_dialer = nonce()?;
        stream.write_all(&self.hello(&nonce_dialer, None).encode()).await?;
        let reply = read_one_frame(&mut stream, KIND_HELLO).await?;
        let mut payload = reply.payload;
        let (acceptor, nonce_acceptor, cluster_id) = parse_hello(&mut payload)?;
        anyhow::ensure!(cluster_id == self.cluster_id, "peer is in cluster {cluster_id:?}");
        anyhow::ensure!(&acceptor.node_id == expected, "dialed {expected} but reached {}", acceptor.node_id);
        anyhow::ensure!(payload.len() == 32, "peer sent no proof");
        let transcript = self.transcript(b'A', &self.identity, &acceptor, (&nonce_dialer, &nonce_acceptor));
        hmac::verify(&self.key, &transcript, &payload)
            .map_err(|_| anyhow::anyhow!("peer does not hold the cluster secret"))?;
        let transcript = self.transcript(b'D', &self.identity, &acceptor, (&nonce_dialer, &nonce_acceptor));
        let proof = hmac::sign(&self.key, &transcript);
        stream.write_all(&PeerFrame::new(KIND_PROOF, Bytes::copy_from_slice(proof.as_ref())).encode()).await?;
        Ok((stream, acceptor))
    }

    pub(super) async fn handshake_as_acceptor(
        &self,
        mut stream: TcpStream,
    ) -> anyhow::Result<(TcpStream, NodeIdentity)> {
        let hello = read_one_frame(&mut stream, KIND_HELLO).await?;
        let mut payload = hello.payload;
        let (dialer, nonce_dialer, cluster_id) = parse_hello(&mut payload)?;
        anyhow::ensure!(cluster_id == self.cluster_id, "peer is in cluster {cluster_id:?}");
        anyhow::ensure!(dialer.node_id != self.identity.node_id, "peer claims our own node id");
        let nonce_acceptor = nonce()?;
        let transcript = self.transcript(b'A', &dialer, &self.identity, (&nonce_dialer, &nonce_acceptor));
        let mac = hmac::sign(&self.key, &transcript);
        stream.write_all(&self.hello(&nonce_acceptor, Some(mac.as_ref())).encode()).await?;
        let proof = read_one_frame(&mut stream, KIND_PROOF).await?;
        let transcript = self.transcript(b'D', &dialer, &self.identity, (&nonce_dialer, &nonce_acceptor));
        hmac::verify(&self.key, &transcript, &proof.payload)
            .map_err(|_| anyhow::anyhow!("peer does not hold the cluster secret"))?;
        Ok((stream, dialer))
    }
}

async fn read_one_frame(stream: &mut TcpStream, kind: u8) -> anyhow::Result<PeerFrame> {
    let mut buffer = BytesMut::with_capacity(256);
    loop {
        if let Some(total_len) = wire::check(&buffer)? {
            let frame = wire::parse(&mut buffer, total_len);
            anyhow::ensure!(frame.kind == kind, "unexpected frame kind {} in handshake", frame.kind);
            anyhow::ensure!(buffer.is_empty(), "peer sent data before the handshake ended");
            return Ok(frame);
        }
        anyhow::ensure!(buffer.len() < 4096, "handshake frame too long");
        if stream.read_buf(&mut buffer).await? == 0 {
            anyhow::bail!("peer closed during the handshake");
        }
    }
}

fn nonce() -> anyhow::Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(nonce)
}

fn put_str(buf: &mut BytesMut, text: &str) {
    buf.put_u16_le(text.len() as u16);
    buf.put_slice(text.as_bytes());
}

fn get_str(buf: &mut Bytes) -> anyhow::Result<String> {
    anyhow::ensure!(buf.remaining() >= 2, "truncated hello");
    let len = buf.get_u16_le() as usize;
    anyhow::ensure!(buf.remaining() >= len, "truncated hello");
    let text = buf.split_to(len);
    Ok(String::from_utf8(text.to_vec())?)
}

fn parse_hello(payload: &mut Bytes) -> anyhow::Result<(NodeIdentity, [u8; NONCE_LEN], String)> {
    let node_id = get_str(payload)?;
    anyhow::ensure!(!node_id.is_empty(), "empty node id");
    anyhow::ensure!(payload.remaining() >= 8 + NONCE_LEN, "truncated hello");
    let generation = payload.get_u64_le();
    let mut nonce = [0u8; NONCE_LEN];
    payload.copy_to_slice(&mut nonce);
    let cluster_id = get_str(payload)?;
    Ok((NodeIdentity { node_id: NodeId::new(node_id), generation }, nonce, cluster_id))
}
