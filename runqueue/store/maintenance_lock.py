"""The maintenance lock: one worker of the fleet at a time relays and reaps. A row in
maintenance_locks, taken with a guarded UPDATE and an expiry written and compared with the
database's clock (as leases are), so a holder that dies frees it by itself."""

from __future__ import annotations

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from runqueue.store.models import MaintenanceLock
from runqueue.store.transactions import StoreBase, db_now, db_now_plus

LOCK_NAME = "maintenance"


class MaintenanceLockStatements(StoreBase):
    def take_maintenance_lock(self, holder: str, seconds: float) -> bool:
        """Take or renew the lock for `seconds`; False if another live holder has it."""
        with self.transaction() as conn:
            exists = conn.execute(
                select(MaintenanceLock.name).where(MaintenanceLock.name == LOCK_NAME)
            ).first()
            if exists is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            insert(MaintenanceLock).values(
                                name=LOCK_NAME, holder=holder, expires_at=db_now_plus(seconds)
                            )
                        )
                    return True
                except IntegrityError:
                    pass
            taken = conn.execute(
                update(MaintenanceLock)
                .where(
                    MaintenanceLock.name == LOCK_NAME,
                    or_(MaintenanceLock.holder == holder, MaintenanceLock.expires_at <= db_now()),
                )
                .values(holder=holder, expires_at=db_now_plus(seconds))
            ).rowcount
        return taken == 1
