"""The benchmarks run and print what they promise (their numbers are for notes, not asserted)."""

from __future__ import annotations

import html
import json
import subprocess
import sys

import pytest

from tests.served import ROOT

CHURN = ("viewers_deleted", "viewers_vanished", "offers_never_connected", "sessions_created_and_deleted",
         "tokens_revoked_mid_stream")  # fmt: skip


def bench(*args: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-m", "vgpustream", "bench", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_bench_pipeline_reports_every_stage():
    result = bench("pipeline", "--resolution", "320x240", "--frames", "5")
    assert result["resolution"] == "320x240" and result["frames"] >= 5
    assert set(result["stages"]) == {"capture", "convert", "encode", "total"}
    for stage in [*result["stages"].values(), result["naive_total"]]:
        assert 0 < stage["p50"] <= stage["p95"]
    assert result["total_to_naive_p50"] > 0, "the naive PyAV path ran beside it"
    assert all(value >= 0 for value in result["throughput"].values()), result["throughput"]
    assert result["step_to_naive"] > 0 and result["cpu_to_naive"] > 0, "the capture loop ran flat out, in turn with it"


def test_bench_x264_times_each_variant_against_the_sessions_own_settings():
    result = bench("x264", "--resolution", "320x240", "--pattern", "desktop", "--frames", "25", "--rounds", "1")
    rows = {row["variant"]: row for row in result["variants"]}
    assert result["session_options"]["preset"] == "ultrafast" and rows["session"]["cpu_to_session_p50"] == 1.0
    assert all(row["cpu_ms_per_frame_p50"] > 0 and row["psnr_db_min"] > 30 for row in rows.values()), rows
    assert rows["tune stillimage"]["kbit_per_s"] == rows["session"]["kbit_per_s"], "changes nothing ultrafast uses"
    assert rows["cqp 16 (no cap)"]["kbit_per_s"] != rows["session"]["kbit_per_s"], "the variants are applied"


def test_bench_fanout_runs_each_viewer_count_over_each_transport_with_a_decoding_viewer():
    args = ("--viewers", "1,2", "--seconds", "2", "--resolution", "320x240", "--transports", "webrtc,websocket")
    result = bench("fanout", *args)
    assert [(run["transport"], run["viewers"]) for run in result["runs"]] == [
        ("webrtc", 1),
        ("webrtc", 2),
        ("websocket", 1),
        ("websocket", 2),
    ]
    for run in result["runs"]:
        assert run["cpu_per_wall"] > 0
        assert run["fps_per_viewer_min"] > 10, run
        assert run["decoded_stamped_frames"] > 10, "the decoding viewer read the frame stamps"
        assert run["server_cpu_ms_per_frame"] > 0, run
    slopes = result["per_viewer_cpu_ms_per_frame"]
    assert set(slopes) == {"webrtc", "websocket"} and all(isinstance(v, float) for v in slopes.values()), slopes


def test_bench_quality_scores_what_a_watcher_and_a_joiner_decode():
    result = bench("quality", "--resolutions", "320x240,640x360", "--moving", "0.3", "--still", "1.5")
    assert [run["resolution"] for run in result["runs"]] == ["320x240", "640x360"]
    for run in result["runs"]:
        moving, still = run["moving"], run["still"]
        assert 20 < moving["psnr_db_min"] <= moving["psnr_db_p50"] < 100, run
        assert still["frames_after_stop"] >= 1 and still["psnr_db_final"] >= still["psnr_db_first"], run
        assert still["joiner_replayed_packets"] >= 1 and still["joiner_psnr_db"] is not None, run
        # the refinement is what a joiner is replayed: it sees the still picture as the watcher does
        assert abs(still["joiner_psnr_db"] - still["psnr_db_final"]) < 0.01, run


@pytest.mark.browser
def test_bench_latency_reads_the_stamps_in_chromium():
    result = bench("latency", "--resolutions", "640x360", "--frames", "60", "--loads", "3", "--joins", "2")
    (run,) = result["runs"]
    join = run["join_phase_ms"]
    assert join["joins"] == 2 and len(join["max_per_join"]) == 2, join
    assert 0 < join["p50"] <= join["p95"] <= join["max"] == max(join["max_per_join"]) < 5000, join
    assert run["resolution"] == "640x360" and run["frames"] == 60
    for figures in run["glass_to_glass_ms"].values():
        assert 0 < figures["p50"] <= figures["p95"] <= figures["p99"] < 5000, run
    assert 0 < run["whep_post_to_first_frame_ms"] < 30_000, run
    first, post = run["page_load_to_first_frame_ms"], run["whep_post_answered_ms"]
    assert len(first["all"]) == len(post["all"]) == 3 and 0 < first["min"] <= first["p50"] <= first["max"], run
    assert 0 < post["p50"] < first["p50"], run
    assert "--disable-features=WebRtcHideLocalIpsWithMdns" not in result["browser"]["flags"], "Chromium's defaults"


def test_bench_capacity_runs_each_session_count_with_its_viewers():
    result = bench("capacity", "--sessions", "1,2", "--seconds", "2", "--resolution", "320x240")
    assert [run["sessions"] for run in result["runs"]] == [1, 2]
    for run in result["runs"]:
        assert run["cpu_per_wall"] > 0 and run["fps_per_viewer_min"] > 10, run
        assert run["encoded_fps_per_session"] > 10 and run["server_cpu_ms_per_frame"] > 0, run
    assert result["sessions_held"] in (0, 1, 2)
    assert all(run["changed_area_per_frame"] == 1.0 for run in result["runs"]), "the text page changes every pixel"
    desktop = bench("capacity", "--sessions", "1", "--seconds", "3", "--resolution", "640x360", "--pattern", "desktop")
    (run,) = desktop["runs"]
    assert 0.01 < run["changed_area_per_frame"] < 0.3, "a desktop changes a few percent of itself at a time"
    assert run["kbit_per_s_per_session"] > 0 and run["encoded_fps_per_session"] > 10, run


@pytest.mark.browser
def test_bench_report_writes_one_page_with_four_plots(tmp_path):
    result = bench("report", "--quick", "--output", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text()
    assert result["plots"] == 4 and page.count('<img alt="') == 4 and page.count("data:image/png;base64,") == 4
    figures = html.unescape(page)
    assert '"latency"' in figures and '"capacity"' in figures, "the figures are on the page too"


def test_bench_abuse_finds_no_5xx_and_gives_resources_back():
    result = bench("abuse", "--examples", "25")
    assert result["requests"] > 150 and result["data_channel_messages"] == 25
    assert result["server_errors_5xx"] == 0, result["server_error_examples"]
    assert result["server_tracebacks"] == 0
    assert result["stream_goes_on"], result
    assert result["back_to_baseline"], (result["resources_before"], result["resources_after"])
    attacks = result["attacks"]
    assert not result["token_in_log"] and attacks["stream_goes_on"], attacks
    seats = attacks["seats"]
    # 3 x 201 then 503s, unless the machine is so slow that a seat was freed (after 10 s) meanwhile
    assert seats["offers"]["201"] >= 3 and seats["offers"].get("503"), "the token fills the seats but the last"
    assert seats["operator_status"] == 201 and seats["seats_freed_s"] is not None, seats
    assert all(a["status"].endswith(" 400 Bad Request") and a["ours"] for a in attacks["parser_errors"].values())
    trickle = attacks["header_trickle"]
    assert trickle["closed_by_server"] == trickle["connections"] == 500, trickle
    assert attacks["crowd"]["refused_429"] == 200 - 128, attacks["crowd"]
    assert attacks["channel_flood"]["told"] == ["flood"], attacks["channel_flood"]


def test_bench_idle_reports_the_cost_of_unwatched_sessions_and_the_first_frame():
    result = bench("idle", "--sessions", "2", "--seconds", "1", "--runs", "1", "--resolution", "320x240")
    assert [run["kind"] for run in result["runs"]] == ["moving", "still"]
    for run in result["runs"]:
        assert run["sessions"] == 2 and run["cores_per_session"] >= 0
        assert run["encoded_fps_per_session"] == 0, "nobody watches: nothing is encoded"
        assert len(run["first_frame_s"]["all"]) == 1 and run["first_frame_s"]["median"] > 0
    assert result["runs"][0]["captured_fps_per_session"] > 0, "a moving picture is sampled"


def test_bench_soak_holds_flat_and_keeps_its_viewers():
    result = bench("soak", "--minutes", "2")
    assert all(result["churn"].get(kind, 0) > 0 for kind in CHURN), result["churn"]
    assert result["server_errors_5xx"] == 0 and result["server_tracebacks"] == 0, result["server_error_examples"]
    assert result["back_to_baseline"] and result["viewers_left_besides_steady"] == 0, result
    for viewer in result["steady_viewers"]:
        assert viewer["fps_worst_window"] > 0, "a steady viewer froze for a whole window"


def test_bench_weaknet_measures_the_lossy_viewer_against_a_clean_baseline():
    result = bench("weaknet", "--viewers", "2", "--seconds", "3", "--resolution", "320x240")
    assert result["link"]["dropped"] > 0 and len(result["others_fps_ratio"]) == 1
    for phase in ("clean", "impaired"):
        assert [v["fps"] > 0 for v in result[phase]["viewers"]] == [True, True], result[phase]


def test_bench_record_measures_a_session_with_and_without_a_recording():
    result = bench("record", "--seconds", "2", "--resolution", "320x240")
    assert [run["run"] for run in result["runs"]] == ["viewer", "viewer+recording", "recording"]
    viewer, both, alone = result["runs"]
    assert viewer["viewer_fps"] > 0 and both["viewer_fps"] > 0 and alone["viewer_fps"] is None
    for run in (both, alone):
        assert run["recorded_fps"] > 0 and run["recorded_kbit_s"] > 0 and run["dropped"] == 0, run
    assert alone["encoded_fps"] > 0, "a recording alone keeps the session encoding"


def test_bench_sound_reports_the_cpu_of_one_sessions_sound_path():
    result = bench("sound", "--seconds", "1")
    assert result["seconds_of_sound"] == 1.0 and 0 < result["cpu_per_second_of_sound"] < 1
    assert 45 <= result["packets"] <= 50 and result["bytes_per_second"] > 0


def test_bench_cluster_times_the_list_through_the_gateway_and_its_cpu_per_whep_offer():
    result = bench("cluster", "--hosts", "2", "--sessions-per-host", "2", "--lists", "5", "--offers", "3")
    assert (result["hosts"], result["sessions_per_host"], result["whep_offers"]) == (2, 2, 3)
    for key in ("list_through_gateway_ms", "list_of_one_host_ms"):
        assert 0 < result[key]["p50"] <= result[key]["p99"], key
    assert result["gateway_cpu_ms_per_whep"] >= 0 and result["whep_offers_per_second"] > 0
