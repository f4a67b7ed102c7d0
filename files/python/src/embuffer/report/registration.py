"""`embuffer config check`'s look into leginondb: is every configured camera one that Leginon
sends to a buffer server?

Leginon uses a buffer server for a camera only while the camera's newest BufferHostData row
is enabled (`leginon/ddinfo.py` getUseBufferFromImage); with no row at all it writes frames to
the session frame path. A [[camera]] block for a camera with no row is therefore a mistake in
the facility's set-up (the registration role was not run for it): the ingest leaves that
camera's movies on its share, and this check says so before anything starts.
"""

from __future__ import annotations

from embuffer.config import Config
from embuffer.leginon.credentials import read_credentials
from embuffer.leginon.db import LeginonDB
from embuffer.leginon.lookups import instruments_on_host
from embuffer.leginon.placement import newest_buffer_host


def camera_registration_problems(config: Config) -> list[str]:
    try:
        db = LeginonDB(read_credentials(config.db_credentials))
    except Exception as error:  # noqa: BLE001 - unreadable credentials are reported, not raised
        return [f"leginondb not checked: {error}"]
    problems: list[str] = []
    try:
        for camera in config.cameras:
            instruments = instruments_on_host(db, camera.host)
            if not instruments:
                problems.append(
                    f"[camera '{camera.host}'] no InstrumentData row has hostname "
                    f"'{camera.host}': Leginon has not run on that camera PC, or the host is wrong"
                )
            # One PC may carry several instruments (a Thermo scope's TEM and its Falcon):
            # the camera among them needs the row; a TEM never has frames to send.
            unregistered = [i for i in instruments if newest_buffer_host(db, int(i["id"])) is None]
            if instruments and len(unregistered) == len(instruments):
                names = ", ".join(f"{i['name']} (InstrumentData {i['id']})" for i in instruments)
                problems.append(
                    f"[camera '{camera.host}'] {names} has no BufferHostData row, so Leginon "
                    "writes its frames to the session frame path, not to this buffer: run the "
                    "registration (site.yml, embuffer_registration) for it, or remove the "
                    "camera from the configuration"
                )
    except Exception as error:  # noqa: BLE001 - a database down is a finding, not a crash
        problems.append(f"leginondb not checked: {error}")
    finally:
        db.close()
    return problems
