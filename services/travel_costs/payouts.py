"""The fund's payouts, with four eyes: one fund member proposes a batch of every approved
claim (its SEPA file written, encrypted and stored, its claims reserved and still APPROVED),
another releases it (its claims PAID, each with its event, and its file served).

The batch's lifecycle is the table ``domain.BATCH_LIFECYCLE``; the SEPA writer is
``sepa.py``. A batch whose work stopped (a crash, a restart) holds a lease: once it has run
out, the next proposal or release takes it up (a proposal without a stored file is given
up, its claims free again; a release is finished)."""
import time
from datetime import timedelta

from bson import ObjectId

from common import clock, metrics
from common.errors import BadUserInput, Conflict
from common.workflow import actor_trace, audit_entry
from services.travel_costs import domain, sepa

PAY_CHUNK = 1000            # claims marked paid (with their events) per transaction
FILE_PART = 1024 * 1024     # plain bytes of the SEPA file per encrypted part


class Payouts:
    """One worker's view of the payouts: the fund's store, data key, settings and outbox."""

    def __init__(self, store, cipher, settings, outbox, log, claims):
        """``claims``: the service's steps of a claim (``step(claim, action, actor, reason,
        session, changes)`` and ``hold_open_claims(reference, reason, session)``)."""
        self.store, self.cipher, self.settings = store, cipher, settings
        self.outbox, self.log, self.claims = outbox, log, claims

    # --- propose --------------------------------------------------------------------------

    def propose(self, actor):
        """A batch of every approved claim not in another batch. A claim that cannot be
        written into the file is put on hold with the reason; the others are in it."""
        domain.may_review(actor)
        self.take_up_stalled()
        now = clock.now_millis()
        batch = domain.new_batch(str(ObjectId()), actor, self.settings.sepa_schema, now,
                                 self._lease(now))
        self.store.insert_batch(batch)
        reserved = self.store.reserve_approved_claims(batch["_id"], PAY_CHUNK)
        if not reserved:
            self._give_up(batch, "no approved claims")
            raise domain.no_claims_to_pay()
        try:
            written = self._write_file(batch, reserved, now.date())
        except Exception:
            self._give_up(batch, "the file could not be written")
            raise
        if written is None:
            self._give_up(batch, "no claim could be written")
            raise BadUserInput("no approved claim can be written into a SEPA file: each is "
                               "on hold now with the reason")
        filed = self._step(batch, "file", domain.SYSTEM, lease_until=batch["lease_until"],
                           changes=written, unset=("lease_until",))
        if not filed:
            self.store.delete_file_parts(batch["_id"])
            raise Conflict("the payout batch took too long and was given up; propose a new one")
        batch = self.store.batch(batch["_id"])
        self.log.info("travel_costs.payout_batch_proposed", batch_id=batch["_id"],
                      claim_count=batch["claim_count"], schema=batch["schema"])
        return domain.batch_view(batch, actor)

    def _write_file(self, batch, reserved, execution_date):
        """Writes the batch's file as a stream and stores it sealed in parts as it is
        written: a light pass counts and sums the claims (the file's header), then they are
        read a chunk at a time and each transfer written at once, so the process holds a
        chunk, never the file. A claim the file cannot carry is held; the file is then
        written again without it (its header counts what it holds). What the batch records
        of the file, or None when no claim could be written."""
        while True:
            chunks, total = self._tally(batch["_id"], reserved)
            count = sum(chunk["count"] for chunk in chunks)
            if not count:
                return None
            parts = SealedParts(self.store, self.cipher, batch["_id"])
            written = sepa.TransferFile(self.settings.account, batch["schema"], execution_date,
                                        count, total, parts)
            written.open()
            unwritable = []
            for chunk in chunks:
                for claim in self.store.reserved_claims(batch["_id"], chunk):
                    try:
                        transfer = self._transfer(claim)
                    except sepa.UnwritableTransfer as why:
                        unwritable.append((claim["_id"], str(why)))
                        continue
                    if not unwritable:   # after the first, only checked
                        written.write(transfer)
            if not unwritable:
                written.close()
                size, number = parts.close()
                return {"claim_count": count, "total_cents": total, "chunks": chunks,
                        "file_size": size, "file_parts": number}
            for claim_id, why in unwritable:
                self._hold_unwritable(claim_id, why)

    def _tally(self, batch_id, reserved):
        """The light pass: the chunks the batch is paid in and its total, from the claims'
        ids and amounts alone, read a reserved range of ids at a time (the order of their
        ids, as the ranges are)."""
        total = 0

        def ids():
            nonlocal total
            for each in reserved:
                for claim in self.store.reserved_amounts(batch_id, each):
                    total += claim["amount_cents"]
                    yield claim["_id"]

        chunks = domain.pay_chunks(ids(), PAY_CHUNK)
        return chunks, total

    def _transfer(self, claim):
        """The claim's credit transfer, its account decrypted only now."""
        try:
            account = self.cipher.decrypt(claim["account"], context=claim["_id"])
        except Exception:
            raise sepa.UnwritableTransfer("its bank account cannot be read") from None
        return sepa.credit_transfer(claim["_id"], claim["amount_cents"], account,
                                    f"Reiskostenfonds mantelzorg, declaratie {claim['_id']}")

    def _hold_unwritable(self, claim_id, why):
        """A claim the file cannot carry leaves the batch and waits on hold for a review:
        one caregiver's data never stops a payout for everyone."""
        reason = f"not paid: {why}; the fund's staff contact the caregiver"
        self.store.in_transaction(lambda session: self.claims.step(
            self.store.claim(claim_id, session), "hold", domain.SYSTEM, reason, session,
            changes={"batch_id": None}))
        self.log.warning("travel_costs.payout_claim_held", claim_id=claim_id, reason=why)

    def _give_up(self, batch, reason):
        """Lets a batch without a file go: its claims can be in the next batch. A claim whose
        declaration ended meanwhile (holds skip claims in a batch) goes on hold now."""
        if not self._step(batch, "give_up", domain.SYSTEM, reason=reason,
                          changes={"reason": reason}, unset=("lease_until",)):
            return
        self.store.delete_file_parts(batch["_id"])
        for reference in self.store.release_claims(batch["_id"]):
            ended = domain.ENDED.get((self.store.declaration(reference) or {}).get("status"))
            if ended:
                self.store.in_transaction(lambda session, r=reference, e=ended:
                                          self.claims.hold_open_claims(r, e, session))
        self.log.warning("travel_costs.payout_batch_given_up", batch_id=batch["_id"],
                         reason=reason)

    # --- release --------------------------------------------------------------------------

    def release(self, batch_id, actor):
        """The second fund member's release: the batch's claims are marked PAID with their
        events, a chunk per transaction. Of two releases at once, one releases; the other
        gets CONFLICT."""
        domain.may_review(actor)
        self.take_up_stalled()
        batch = domain.require_listed(self.store.batch(batch_id))
        domain.may_release(actor, batch)
        now = clock.now_millis()
        if not self._step(batch, "release", actor, changes={
                "released_by": actor_trace(actor), "released_at": now,
                "lease_until": self._lease(now)}):
            raise Conflict("the payout batch was released meanwhile")
        batch = self._pay(self.store.batch(batch_id))
        self.log.info("travel_costs.payout_batch_released", batch_id=batch_id,
                      claim_count=batch["claim_count"])
        return domain.batch_view(batch, actor)

    def _pay(self, batch):
        """Marks the batch's claims PAID, a chunk (a range of ids) per transaction; safe to
        run again for a release that stopped halfway."""
        seconds = []
        for chunk in batch.get("chunks", []):
            started = time.perf_counter()

            def work(session, chunk=chunk):
                entry = audit_entry(domain.APPROVED, domain.PAID, "pay", domain.SYSTEM,
                                    clock.now_millis())
                claims = self.store.pay_chunk(batch["_id"], chunk, entry, session)
                self.outbox.record_many(session, [(domain.EVENT_OF[domain.PAID],
                                                   domain.event_payload(c)) for c in claims])
                return claims

            claims = self.store.in_transaction(work)
            metrics.TRAVEL_CLAIMS_PAID.inc(len(claims))
            metrics.TRAVEL_EUROS_PAID.inc(
                float(domain.from_cents(sum(c["amount_cents"] for c in claims))))
            seconds.append(time.perf_counter() - started)
        self._step(batch, "paid", domain.SYSTEM, unset=("lease_until",))
        if seconds:   # each chunk costs the same however large the batch (docs/performance.md)
            self.log.info("travel_costs.payout_chunks_paid", batch_id=batch["_id"],
                          chunks=len(seconds), first_chunk_ms=round(seconds[0] * 1000, 1),
                          last_chunk_ms=round(seconds[-1] * 1000, 1),
                          slowest_chunk_ms=round(max(seconds) * 1000, 1),
                          all_chunks_ms=round(sum(seconds) * 1000, 1))
        return self.store.batch(batch["_id"])

    def take_up_stalled(self):
        """Batches whose work stopped before their lease ran out: a proposal is given up
        (it stored no file in time), a release is finished."""
        now = clock.now_millis()
        for batch in self.store.stalled_batches(now):
            if batch["status"] == domain.PREPARING:
                self._give_up(batch, "its preparation stopped")
            elif self.store.extend_lease(batch, self._lease(now)):
                self._pay(self.store.batch(batch["_id"]))

    # --- reading ----------------------------------------------------------------------------

    def page(self, first, after, actor):
        domain.may_review(actor)
        after_batch = None
        if after is not None:
            after_batch = self.store.batch(after)
            if after_batch is None or after_batch["status"] not in domain.LISTED:
                raise BadUserInput("after: not a payout batch of an earlier page", field="after")
        return [domain.batch_view(b, actor) for b in self.store.batches_page(first, after_batch)]

    def file_piece(self, batch_id, offset, actor):
        """A piece of a released batch's SEPA file, decrypted only now: {"size", "data"
        (bytes of one part from ``offset``), "schema"}. Until the release: CONFLICT."""
        domain.may_review(actor)
        batch = domain.require_listed(self.store.batch(batch_id))
        if batch["status"] != domain.RELEASED:
            raise Conflict("the payout batch's file is served once another fund member has "
                           "released it")
        offset = int(offset)
        size = batch["file_size"]
        if not 0 <= offset <= size:
            raise BadUserInput("offset: outside the file", field="offset")
        number = offset // FILE_PART
        part = self.store.file_part(batch["_id"], number) if offset < size else None
        if part is None:
            return {"size": size, "data": b"", "schema": batch["schema"]}
        piece = self.cipher.decrypt(part["sealed"], context=part["_id"]).encode("latin-1")
        return {"size": size, "data": piece[offset - number * FILE_PART:],
                "schema": batch["schema"]}

    def seal_plain_files(self):
        """Files an earlier release stored as written are encrypted in parts; how many."""
        sealed = 0
        for batch in self.store.batches_with_plain_files():
            content = self.store.read_legacy_file(batch["file_id"])
            parts = [sealed_part(self.cipher, batch["_id"], number,
                                 content[start:start + FILE_PART])
                     for number, start in enumerate(range(0, len(content), FILE_PART))]
            self.store.replace_legacy_file(batch["_id"], batch["file_id"], parts, len(content))
            sealed += 1
        return sealed

    # --- helpers ------------------------------------------------------------------------------

    def _lease(self, now):
        return now + timedelta(seconds=self.settings.payout_lease_seconds)

    def _step(self, batch, action, actor, reason=None, changes=None, unset=(), lease_until=None):
        """One step of the batch's table from the status read; False when another came first."""
        after = domain.next_batch_status(batch, action, actor, reason)
        entry = audit_entry(batch["status"], after, action, actor, clock.now_millis(), reason)
        return self.store.change_batch(batch["_id"], batch["status"], after, entry,
                                       changes=changes, unset=unset, lease_until=lease_until)


def sealed_part(cipher, batch_id, number, piece):
    """A part of a batch's file (bytes), sealed with the data key bound to its place (batch
    and number), so that no part can be moved to another file or place."""
    part_id = f"{batch_id}:{number}"
    return {"_id": part_id, "batch_id": batch_id, "part": number,
            "sealed": cipher.encrypt(piece.decode("latin-1"), context=part_id)}


class SealedParts:
    """Where a batch's file is written: its bytes are sealed and stored a part of FILE_PART
    bytes at a time as they come, so no more than a part is held. The parts of an earlier
    run of the same batch (one that stopped) are deleted first."""

    def __init__(self, store, cipher, batch_id):
        self.store, self.cipher, self.batch_id = store, cipher, batch_id
        self.buffer, self.size, self.number = bytearray(), 0, 0
        store.delete_file_parts(batch_id)

    def write(self, data):
        self.buffer += data
        self.size += len(data)
        while len(self.buffer) >= FILE_PART:
            self._store(bytes(self.buffer[:FILE_PART]))
            del self.buffer[:FILE_PART]

    def close(self):
        """The last part stored; the file's size and how many parts it has."""
        if self.buffer:
            self._store(bytes(self.buffer))
            self.buffer.clear()
        return self.size, self.number

    def _store(self, piece):
        self.store.save_file_part(sealed_part(self.cipher, self.batch_id, self.number, piece))
        self.number += 1
