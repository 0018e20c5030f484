"""LeafSpy Pro logs written here, in the app's format: the real recordings cannot be shipped.

The column names are the app's (its version with 155 columns); every value is invented.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path

CELLS = 96
HEADER = (
    "Date/Time,Lat,Long,Elv,Speed,Gids,SOC,AHr,Pack Volts,Pack Amps,Max CP mV,Min CP mV,"
    "Avg CP mV,CP mV Diff,Judgment Value,Pack T1 F,Pack T1 C,Pack T2 F,Pack T2 C,Pack T3 F,"
    "Pack T3 C,Pack T4 F,Pack T4 C," + ",".join(f"CP{i}" for i in range(1, CELLS + 1))
    + ",12v Bat Amps,VIN,Hx,12v Bat Volts,Odo(km),QC,L1/L2,TP-FL,TP-FR,TP-RR,TP-RL,Ambient,"
    "SOH,RegenWh,BLevel,epoch time,Motor Pwr(100w),Aux Pwr(100w),A/C Pwr(250w),"
    "A/C Comp(0.1MPa),Est Pwr A/C(50w),Est Pwr Htr(250w),Plug State,Charge Mode,OBC Out Pwr,"
    "Gear,HVolt1,HVolt2,GPS Status,Power SW,BMS,OBC,Debug,Motor Temp,Inverter 2 Temp,"
    "Inverter 4 Temp"
).split(",")
VIN = "1N4AZ0CP5DC999999"


def row(epoch_s: float, **values: object) -> list[str]:
    """One row: a parked, switched-on, healthy car unless ``values`` (by column name, with
    ``cells`` for the 96 cell voltages in mV) say otherwise."""
    cells = values.pop("cells", [3900] * CELLS)
    assert isinstance(cells, list)
    base: dict[str, object] = {
        "Date/Time": "01/01/2019 0:00:00", "Lat": "", "Long": "", "Elv": "0", "Speed": "0.0",
        "Gids": "150", "SOC": "600000", "AHr": "550000", "Pack Volts": "380.00",
        "Pack Amps": "5.000", "Max CP mV": max(abs(c) for c in cells),
        "Min CP mV": min(abs(c) for c in cells), "Avg CP mV": "3900", "CP mV Diff": "0",
        "Judgment Value": "0", "Pack T1 F": "70.0", "Pack T1 C": "21.0", "Pack T2 F": "71.6",
        "Pack T2 C": "22.0", "Pack T3 F": "none", "Pack T3 C": "none", "Pack T4 F": "73.4",
        "Pack T4 C": "23.0", "12v Bat Amps": "na", "VIN": VIN, "Hx": "80.0",
        "12v Bat Volts": "14.10", "Odo(km)": "52000", "QC": "0", "L1/L2": "100",
        "TP-FL": "36", "TP-FR": "36", "TP-RR": "36", "TP-RL": "36", "Ambient": "68",
        "SOH": "85", "RegenWh": "0", "BLevel": "20", "epoch time": epoch_s,
        "Motor Pwr(100w)": "0", "Aux Pwr(100w)": "1", "A/C Pwr(250w)": "0",
        "A/C Comp(0.1MPa)": "0", "Est Pwr A/C(50w)": "0", "Est Pwr Htr(250w)": "0",
        "Plug State": "0", "Charge Mode": "0", "OBC Out Pwr": "0", "Gear": "4",
        "HVolt1": "380.00", "HVolt2": "380.00", "GPS Status": "0", "Power SW": "1", "BMS": "1",
        "OBC": "1", "Debug": "0080", "Motor Temp": "80", "Inverter 2 Temp": "0",
        "Inverter 4 Temp": "0",
    }
    base.update({f"CP{i + 1}": v for i, v in enumerate(cells)})
    unknown = set(values) - set(base)
    assert not unknown, unknown
    base.update(values)
    return [str(base[c]) for c in HEADER]


def write(path: Path, rows: Iterable[list[str]], header: bool = True) -> Path:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle, lineterminator="\n")
        if header:
            out.writerow(HEADER)
        out.writerows(rows)
    return path


def drives(start_s: int, days: int, tyres: Mapping[str, float] | None = None,
           rl_loss_psi_per_day: float = 0.0) -> list[list[str]]:
    """One 20-minute drive a day (a reading a minute), tyres at ``tyres`` psi (36 each by
    default), the rear-left one losing ``rl_loss_psi_per_day``."""
    psi = {"TP-FL": 36.0, "TP-FR": 36.25, "TP-RR": 35.75, "TP-RL": 36.0, **(tyres or {})}
    out: list[list[str]] = []
    for day in range(days):
        for minute in range(20):
            t = start_s + day * 86_400 + minute * 60
            now = dict(psi)
            now["TP-RL"] -= rl_loss_psi_per_day * (day + minute / 1440)
            out.append(row(t, Speed=f"{40 + minute % 5:.1f}",
                           **{k: f"{round(v * 4) / 4:g}" for k, v in now.items()}))
    return out
