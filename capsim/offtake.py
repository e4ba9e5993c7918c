"""Offtake agreements, as the part of a replication that runs them: negotiation, tranches due
from the provider's leasable GPUs (first come first served by due time), late deliveries, the
termination right, and GPUs going back at the end of the term. Mixed into
:class:`~capsim.engine._Replication`, which holds the state.
"""

from __future__ import annotations

import math

from capsim.records import Blockage
from capsim.resources import Supply


class Offtakes:
    """The lease handlers and each provider's pools of GPUs offered for lease."""

    # -- leases --------------------------------------------------------------------------------

    def _lease_pool(self, org: str, gen: str) -> Supply:
        key = (org, gen)
        if key not in self.lease_supply:
            self.lease_supply[key] = Supply(f"{org} {gen} for lease")
        return self.lease_supply[key]

    def _leasable(self, org: str) -> float:
        return self.model.org(org).leasable if self.scenario.orgs else 0.0

    def _offer(self, org: str, gen: str, gpus: int) -> None:
        """``org``'s new GPUs: its leasable share becomes available to offtake agreements."""
        if share := self._leasable(org):
            self._lease_pool(org, gen).add(math.floor(gpus * share))

    def _lease_signed(self, i: int) -> None:
        info = self.model.leases[i]
        lease = self.scenario.leases[info.name]
        self._log("lease_signed", info.name, info.customer, detail=f"with {lease.provider}")
        base = max(lease.start, self.env.now)
        for k, tranche in enumerate(lease.tranches):
            self._at(base + tranche.at - self.env.now, self._lease_due, (i, k))

    def _lease_due(self, key: tuple[int, int]) -> None:
        """A tranche falls due: ask the provider's pool for it (once the provider can get the
        tranche's generation at all). Lateness counts from the first due date."""
        i, k = key
        if self.terminated[i]:
            return
        info = self.model.leases[i]
        lease = self.scenario.leases[info.name]
        tranche = lease.tranches[k]
        wanted = tranche.generation or lease.generation
        first = key not in self.lease_due_at
        if first:
            self.lease_due_at[key] = self.env.now
            self.lease_state[key] = "due"
            if lease.terminate_if_late is not None:
                self._at(lease.terminate_if_late, self._lease_check, key)
        gen_name, when = self._generation(lease.provider, wanted)
        if gen_name is None:
            if first:
                why = f"{wanted} is not yet available to {lease.provider}"
                self._log("lease_late", info.name, info.customer, detail=why, tranche=k + 1)
            self._at(when - self.env.now, self._lease_due, key)
            return
        gen = self.scenario.generations[gen_name]
        gpus = tranche.gpus or self._gpus_for(tranche.mw, gen)
        self.lease_tranche[key] = (gen_name, gpus, self.lease_due_at[key])
        tags = {"generation": gen_name, "tranche": k + 1}
        self._log("lease_due", info.name, info.customer, gpus, detail=lease.provider, **tags)
        self._lease_pool(lease.provider, gen_name).request(
            key,
            gpus,
            self.lease_due_at[key],
            self._lease_delivered,  # first come by due date
        )
        if self.lease_state[key] == "due" and first:
            why = f"{lease.provider} has no {gen_name} GPUs free for it yet"
            self._log("lease_late", info.name, info.customer, gpus, detail=why, **tags)

    def _lease_delivered(self, key: tuple[int, int]) -> None:
        i, k = key
        info = self.model.leases[i]
        lease = self.scenario.leases[info.name]
        gen_name, gpus, due = self.lease_tranche[key]
        if self.terminated[i]:
            self._lease_pool(lease.provider, gen_name).add(gpus)
            return
        self.lease_state[key] = "delivered"
        late = self.env.now - due
        detail = f"from {lease.provider}" + (
            f", {late:.1f} {self.scenario.time_unit} late" if late else ""
        )
        self._log(
            "lease_delivered",
            info.name,
            info.customer,
            gpus,
            generation=gen_name,
            detail=detail,
            tranche=k + 1,
        )
        self._at(lease.term, self._lease_returned, key)

    def _lease_returned(self, key: tuple[int, int], why: str = "term over") -> None:
        if self.lease_state[key] != "delivered":
            return  # already given back when the agreement was terminated
        self.lease_state[key] = "returned"
        i, k = key
        info = self.model.leases[i]
        lease = self.scenario.leases[info.name]
        gen_name, gpus, _ = self.lease_tranche[key]
        self._log(
            "lease_ended",
            info.name,
            info.customer,
            gpus,
            generation=gen_name,
            detail=f"{why}, back to {lease.provider}",
            tranche=k + 1,
        )
        self._lease_pool(lease.provider, gen_name).add(gpus)

    def _lease_check(self, key: tuple[int, int]) -> None:
        i, k = key
        if self.lease_state.get(key) != "due" or self.terminated[i]:
            return
        info = self.model.leases[i]
        self.terminated[i] = True
        self._log(
            "lease_terminated",
            info.name,
            info.customer,
            detail="a tranche is later than the termination right allows",
            tranche=k + 1,
        )
        lease = self.scenario.leases[info.name]
        for other, state in self.lease_state.items():
            if other[0] == i and state == "due" and other in self.lease_tranche:
                # undelivered tranches leave the provider's queue
                self._lease_pool(lease.provider, self.lease_tranche[other][0]).withdraw(other)
        if not lease.take_or_pay:
            # without take-or-pay the customer walks away from what it already has, too
            for other, state in list(self.lease_state.items()):
                if other[0] == i and state == "delivered":
                    self._lease_returned(other, "agreement terminated, no take-or-pay")

    def _lease_blockages(self) -> list[Blockage]:
        """Tranches of active agreements still not delivered at the horizon."""
        out = []
        for key, state in self.lease_state.items():
            if state != "due" or self.terminated[key[0]]:
                continue
            lease = self.scenario.leases[self.model.leases[key[0]].name]
            where = (self.model.leases[key[0]].name, f"tranche {key[1] + 1}")
            if key not in self.lease_tranche:
                wanted = lease.tranches[key[1]].generation or lease.generation
                out.append(
                    Blockage(
                        *where,
                        "waiting for GPU generation",
                        f"{wanted} not yet available to {lease.provider}",
                    )
                )
                continue
            gen, gpus, due = self.lease_tranche[key]
            pool = self._lease_pool(lease.provider, gen)
            place = pool.waiting(key)
            ahead = place.amount_ahead if place else 0
            out.append(
                Blockage(
                    *where,
                    "waiting for provider GPUs",
                    f"{lease.provider}: wants {gpus:,} {gen} (due {due:.1f}), "
                    f"{pool.available:,.0f} free, {ahead:,.0f} requested ahead of it",
                )
            )
        return out
