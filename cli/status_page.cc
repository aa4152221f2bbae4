#include "cli/status_page.h"

#include <charconv>
#include <cmath>

#include "base/clock.h"
#include "cli/record_format.h"

namespace kappa::cli {
namespace {

std::string Num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  return std::string(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
}
std::string Num(int64_t v) { return std::to_string(v); }
std::string Str(const std::string& s) { return "\"" + JsonEscape(s) + "\""; }

// A stopped version reads nothing: no rate, no ETA.
void ProgressFields(const ProgressSnapshot& p, bool stopped, std::string& out) {
  const double eta = stopped ? -1 : p.eta_seconds();
  out += "\"rate\":" + (stopped ? std::string("null") : Num(p.records_per_second)) + ",\"lag\":" + Num(p.total_lag()) +
         ",\"percent\":" + Num(p.percent_done()) + ",\"eta_s\":" + (eta < 0 ? "null" : Num(eta));
  // A scaled-out version's partitions no running instance reports: their
  // lag is in neither `lag` nor `percent` (`kappa status` says so too).
  out += ",\"source_partitions\":" + Num(int64_t{p.source_partitions}) +
         ",\"unreported_partitions\":" + Num(int64_t{p.unreported_partitions()});
}

}  // namespace

void StatusBoard::OnRegistry(const Registry& registry, const std::string& job) {
  auto record = registry.Job(job);
  std::lock_guard<std::mutex> lock(mu_);
  registry_read_ms_ = WallClockMs();
  if (!record) return;
  record_ = record;
  for (const VersionInfo& v : record->versions) {
    auto progress = registry.Progress(job, v.version);
    if (!progress) continue;
    std::deque<Point>& points = history_[v.version];
    const ProgressSnapshot& s = progress->snapshot;
    if (s.checkpoint_ms != 0 && (points.empty() || points.back().ms < s.checkpoint_ms)) {
      points.push_back({s.checkpoint_ms, s.records_per_second, s.total_lag()});
      while (points.size() > 2 && points.front().ms < s.checkpoint_ms - JobMetrics::kHistoryMs) points.pop_front();
    }
    progress_[v.version] = std::move(*progress);
  }
  paused_.clear();
  for (const VersionInfo& v : record->versions) {
    if (auto throttle = registry.Throttle(job, v.version); throttle && throttle->paused) paused_.insert(v.version);
  }
  promotion_ = registry.Value(Registry::PromotionKey(job));
}

std::string StatusBoard::Json() const {
  const JobMetrics::View v = metrics_->Snapshot();
  const JobMetricsSample& s = v.latest;
  const RecordCounters& c = s.progress.counters;
  std::string out = "{\"command\":" + Str(command_) + ",\"job\":" + Str(v.job) + ",\"version\":" + v.version +
                    ",\"now_ms\":" + Num(WallClockMs()) + ",\"has_sample\":" + (v.has_sample ? "true" : "false");
  if (v.has_sample) {
    const int64_t watermark = s.progress.min_watermark_ms();
    out += ",\"sample_ms\":" + Num(s.now_ms) + ",\"records_in\":" + Num(c.in) + ",\"records_out\":" + Num(c.out) +
           ",\"outputs\":" + Num(c.outputs) + ",\"deduped\":" + Num(c.deduped) + ",\"filtered\":" + Num(c.filtered) +
           ",\"late\":" + Num(c.late) + ",\"dlq\":" + Num(c.dlq) + ",\"rate\":" + Num(v.in_per_s) +
           ",\"outputs_rate\":" + Num(v.outputs_per_s) + ",\"lag\":" + Num(s.progress.total_lag()) +
           ",\"percent\":" + Num(s.progress.percent_done());
    // ETA at the rate measured over the last second (the snapshot's own
    // rate is set only where the status line is printed).
    const int64_t lag = s.progress.total_lag();
    const bool lost = s.progress.source_unreachable();
    const double eta = lost ? -1 : lag == 0 ? 0 : v.in_per_s > 0 ? static_cast<double>(lag) / v.in_per_s : -1;
    // Seconds no Kafka broker has answered (null: reachable): the lag is then the last one seen.
    out += ",\"source_unreachable_s\":" +
           (lost ? Num(SecondsSince(s.progress.source_unreachable_since_ms, s.now_ms)) : std::string("null"));
    // Why, when known (a refused login, a failed TLS handshake); null otherwise.
    out += ",\"source_unreachable_reason\":" +
           (lost && !s.progress.source_unreachable_reason.empty() ? Str(s.progress.source_unreachable_reason)
                                                                  : std::string("null"));
    // Seconds the sink has been retrying a checkpoint the database would not take (null: not waiting), and why.
    const bool waiting = s.progress.sink_waiting();
    out += ",\"sink_waiting_s\":" +
           (waiting ? Num(SecondsSince(s.progress.sink_waiting_since_ms, s.now_ms)) : std::string("null"));
    out += ",\"sink_waiting_reason\":" + (waiting ? Str(s.progress.sink_waiting_reason) : std::string("null"));
    out += ",\"eta_s\":" + (eta < 0 ? std::string("null") : Num(eta)) + ",\"checkpoints\":" + Num(s.checkpoints) +
           ",\"last_checkpoint_ms\":" + Num(s.last_checkpoint_ms) + ",\"state_bytes\":" + Num(s.state_bytes) +
           ",\"watermark_delay_s\":" +
           (watermark == 0 ? std::string("null") : Num(static_cast<double>(s.now_ms - watermark) / 1000.0));
    out += ",\"dlq_by_type\":{";
    for (size_t i = 0; i < s.dlq_by_type.size(); ++i) {
      out += (i ? "," : "") + Str(s.dlq_by_type[i].first) + ":" + Num(s.dlq_by_type[i].second);
    }
    out += "},\"partitions\":[";
    for (size_t i = 0; i < s.progress.partitions.size(); ++i) {
      const PartitionProgress& p = s.progress.partitions[i];
      out += std::string(i ? "," : "") + "{\"partition\":" + Num(int64_t{p.partition}) + ",\"position\":" +
             Num(p.position) + ",\"log_end\":" + Num(p.log_end) + ",\"lag\":" + Num(p.lag()) + "}";
    }
    out += "]";
  }
  out += ",\"alerts\":[";
  for (size_t i = 0; i < v.firing.size(); ++i) {
    out += std::string(i ? "," : "") + "{\"name\":" + Str(v.firing[i].first) +
           ",\"firing\":" + (v.firing[i].second ? "true" : "false") +
           ",\"value\":" + Num(i < v.alert_values.size() ? v.alert_values[i].second : 0.0) + "}";
  }
  out += "],\"history\":[";
  for (size_t i = 0; i < v.history.size(); ++i) {
    const auto& h = v.history[i];
    out += std::string(i ? "," : "") + "[" + Num(h.ms) + "," + Num(h.in_per_s) + "," + Num(h.lag) + "]";
  }
  out += "]";
  std::lock_guard<std::mutex> lock(mu_);
  if (registry_read_ms_ == 0) return out + ",\"registry\":null}";
  out += ",\"registry\":{\"read_ms\":" + Num(registry_read_ms_) +
         ",\"serving\":" + Num(int64_t{record_ ? record_->serving : 0}) +
         ",\"updated_ms\":" + Num(record_ ? record_->updated_at_ms : 0) +
         ",\"promotion\":" + (promotion_ ? Str(*promotion_) : std::string("null")) + ",\"versions\":[";
  if (record_) {
    bool first = true;
    for (const VersionInfo& info : record_->versions) {
      out += std::string(first ? "" : ",") + "{\"version\":" + Num(int64_t{info.version}) +
             ",\"state\":" + Str(VersionStateName(info.state)) +
             ",\"serving\":" + (info.version == record_->serving ? "true" : "false") +
             ",\"output\":" + Str(info.output_topic) + ",\"registered_ms\":" + Num(info.registered_at_ms);
      first = false;
      auto p = progress_.find(info.version);
      if (p != progress_.end()) {
        // Whether its processes still report (a version whose instances
        // were all killed looked running on the page for good, a bug bash),
        // and whether it is paused (kappa throttle --pause).
        const std::string liveness = p->second.Liveness(WallClockMs());
        out += ",\"reporting\":" + std::string(liveness.rfind("not reporting", 0) == 0 ? "false" : "true") +
               ",\"liveness\":" + Str(liveness) + ",\"paused\":" + (paused_.count(info.version) ? "true" : "false");
        out += ",\"stopped\":" + std::string(p->second.stopped ? "true" : "false") + ",\"exit_error\":" +
               (p->second.exit_error.empty() ? std::string("null") : Str(p->second.exit_error)) +
               ",\"progress_ms\":" + Num(p->second.snapshot.checkpoint_ms) + ",";
        ProgressFields(p->second.snapshot, p->second.stopped, out);
      }
      out += ",\"history\":[";
      auto h = history_.find(info.version);
      if (h != history_.end()) {
        for (size_t i = 0; i < h->second.size(); ++i) {
          const Point& pt = h->second[i];
          out += std::string(i ? "," : "") + "[" + Num(pt.ms) + "," + Num(pt.rate) + "," + Num(pt.lag) + "]";
        }
      }
      out += "]}";
    }
  }
  return out + "]}}";
}

const char kStatusPageHtml[] = R"KAPPAHTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kappa status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:18px;margin:0} header .sub{color:#aab}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:14px;padding:14px 20px}
section{background:#fff;border-radius:6px;padding:10px 14px;box-shadow:0 1px 2px #0002}
h2{font-size:14px;margin:0 0 8px;color:#445;text-transform:uppercase;letter-spacing:.04em}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:8px}
.kpi .v{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums} .kpi .l{color:#667;font-size:12px}
table{border-collapse:collapse;width:100%} td,th{padding:3px 6px;text-align:left;border-bottom:1px solid #eee;font-variant-numeric:tabular-nums}
th{color:#667;font-weight:500;font-size:12px} td.n,th.n{text-align:right}
.bar{height:14px;background:#e6e8ee;border-radius:7px;overflow:hidden;margin:6px 0}
.bar div{height:100%;background:#3a7bd5;width:0}
.state{padding:1px 6px;border-radius:8px;font-size:12px;background:#e6e8ee}
.s-live{background:#d7f0dd}.s-replaying{background:#fde9c8}.s-caught-up{background:#d6e6fb}.s-retired{background:#e4e4e4;color:#777}
.serving{font-weight:700;color:#0a7a2f}
.alert-on{color:#b3261e;font-weight:700} .alert-off{color:#0a7a2f}
pre{white-space:pre-wrap;font-size:12px;margin:0;max-height:220px;overflow:auto;background:#f7f7f9;padding:6px}
svg{width:100%;height:170px;background:#fbfbfd}
.legend span{margin-right:12px;font-size:12px} .muted{color:#889}
</style></head><body>
<header><h1 id="title">kappa</h1><span class="sub" id="subtitle"></span><span class="sub" id="updated">connecting...</span></header>
<main>
<section><h2>This process</h2>
<div class="kpis">
<div class="kpi"><div class="v" id="records-in">-</div><div class="l">records in</div></div>
<div class="kpi"><div class="v" id="rate">-</div><div class="l">records/s</div></div>
<div class="kpi"><div class="v" id="lag">-</div><div class="l">lag (records)</div></div>
<div class="kpi"><div class="v" id="eta">-</div><div class="l">ETA</div></div>
<div class="kpi"><div class="v" id="records-out">-</div><div class="l">records out</div></div>
<div class="kpi"><div class="v" id="outputs">-</div><div class="l">rows written</div></div>
<div class="kpi"><div class="v" id="dlq">-</div><div class="l">DLQ</div></div>
<div class="kpi"><div class="v" id="late">-</div><div class="l">late</div></div>
<div class="kpi"><div class="v" id="deduped">-</div><div class="l">deduped</div></div>
<div class="kpi"><div class="v" id="filtered">-</div><div class="l">filtered</div></div>
<div class="kpi"><div class="v" id="checkpoints">-</div><div class="l">checkpoints</div></div>
<div class="kpi"><div class="v" id="watermark-delay">-</div><div class="l">watermark delay</div></div>
</div>
<h2 style="margin-top:10px">Catch-up progress <span id="percent">-</span></h2>
<div class="bar"><div id="progress-bar"></div></div>
<table><thead><tr><th>partition</th><th class="n">position</th><th class="n">log end</th><th class="n">lag</th></tr></thead><tbody id="partitions"></tbody></table>
</section>
<section><h2>Versions</h2>
<table><thead><tr><th>version</th><th>state</th><th class="n">records/s</th><th class="n">lag</th><th class="n">done</th><th class="n">ETA</th></tr></thead>
<tbody id="versions"></tbody></table>
<p class="muted" id="versions-note"></p>
<h2>Last promotion</h2><pre id="promotion">none recorded</pre>
</section>
<section><h2>Throughput (records/s), up to the last 5 minutes</h2><div class="legend" id="legend-rate"></div><svg id="chart-rate"></svg></section>
<section><h2>Lag (records), up to the last 5 minutes</h2><div class="legend" id="legend-lag"></div><svg id="chart-lag"></svg></section>
<section><h2>Dead letters and late records</h2>
<table><thead><tr><th>error type</th><th class="n">written by this process since it started</th></tr></thead><tbody id="dlq-types"></tbody></table>
<p class="muted">The DLQ count above is the version's, restored with its checkpoint; these are this process's own (kappa_dlq_written_total).</p>
<p>late (after the allowed lateness): <b id="late-count">-</b></p>
</section>
<section><h2>Alerts</h2><table><tbody id="alerts"></tbody></table></section>
</main>
<script>
"use strict";
const COLORS=["#3a7bd5","#e07b39","#2e9e5b","#9b59b6","#c0392b","#16a085"];
const $=id=>document.getElementById(id);
const int=n=>n==null?"-":Math.round(n).toLocaleString("en-US");
const dur=s=>{if(s==null)return"-";s=Math.round(s);if(s<60)return s+" s";if(s<3600)return Math.floor(s/60)+" min "+(s%60)+" s";if(s<172800)return Math.floor(s/3600)+" h "+Math.floor(s%3600/60)+" min";return Math.floor(s/86400)+" days";};
const pct=p=>p==null?"-":p.toFixed(1)+" %";
const esc=t=>String(t).replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
function set(id,text){const e=$(id);if(e.textContent!==text)e.textContent=text;}
function chart(svgId,legendId,series,nowMs){
  const svg=$(svgId),W=svg.clientWidth||460,H=svg.clientHeight||170,L=56,R=8,T=8,B=20;
  let first=nowMs;for(const s of series)for(const p of s.points)first=Math.min(first,p[0]);
  const span=Math.min(5*60*1000,Math.max(60*1000,Math.ceil((nowMs-first)/30000)*30000)),x0=nowMs-span;let max=1;
  for(const s of series)for(const p of s.points)if(p[0]>=x0)max=Math.max(max,p[1]);
  max*=1.1;const X=ms=>L+(ms-x0)/span*(W-L-R),Y=v=>T+(1-v/max)*(H-T-B);
  let g=`<line x1="${L}" y1="${H-B}" x2="${W-R}" y2="${H-B}" stroke="#ccd"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H-B}" stroke="#ccd"/>`;
  for(const f of [0.5,1]){const v=max/1.1*f;g+=`<text x="${L-4}" y="${Y(v)+4}" font-size="10" text-anchor="end" fill="#667">${int(v)}</text><line x1="${L}" x2="${W-R}" y1="${Y(v)}" y2="${Y(v)}" stroke="#eef"/>`;}
  const tick=span>120000?60000:span>60000?30000:15000;
  for(let t=tick;t<=span;t+=tick)g+=`<text x="${X(nowMs-t)}" y="${H-6}" font-size="10" text-anchor="middle" fill="#889">-${t>=60000&&t%60000===0?t/60000+" min":t/1000+" s"}</text>`;
  series.forEach((s,i)=>{const pts=s.points.filter(p=>p[0]>=x0).map(p=>X(p[0]).toFixed(1)+","+Y(p[1]).toFixed(1)).join(" ");
    if(pts)g+=`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts}"/>`;});
  svg.innerHTML=g;
  $(legendId).innerHTML=series.map(s=>`<span style="color:${s.color}">&#9632; ${esc(s.name)}</span>`).join("");
}
function render(d){
  set("title","kappa "+d.command+": "+d.job+" v"+d.version);
  set("subtitle",d.registry?("serving v"+d.registry.serving):"no registry (kappa run)");
  if(!d.has_sample){set("updated","waiting for the first sample");return;}
  const age=(d.now_ms-d.sample_ms)/1000;
  set("updated","sample of "+new Date(d.sample_ms).toLocaleTimeString("en-GB")+(age>3?" ("+age.toFixed(0)+" s old)":""));
  $("updated").dataset.ms=d.sample_ms;
  const lost=d.source_unreachable_s!=null;
  const myEta=lost?(d.source_unreachable_reason||"Kafka unreachable")+" for "+dur(d.source_unreachable_s):d.sink_waiting_s!=null?"waiting "+dur(d.sink_waiting_s)+" for PostgreSQL ("+d.sink_waiting_reason+")":d.lag===0?"caught up":dur(d.eta_s);
  set("records-in",int(d.records_in));set("rate",int(d.rate));set("lag",lost?"unknown":int(d.lag));set("eta",myEta);
  set("records-out",int(d.records_out));set("outputs",int(d.outputs));set("dlq",int(d.dlq));set("late",int(d.late));
  set("deduped",int(d.deduped));set("filtered",int(d.filtered));set("checkpoints",int(d.checkpoints));
  set("watermark-delay",dur(d.watermark_delay_s));set("percent",pct(d.percent));set("late-count",int(d.late));
  $("progress-bar").style.width=Math.min(100,d.percent)+"%";
  $("partitions").innerHTML=d.partitions.map(p=>`<tr><td>${p.partition}</td><td class="n">${int(p.position)}</td><td class="n">${int(p.log_end)}</td><td class="n">${int(p.lag)}</td></tr>`).join("");
  const types=Object.entries(d.dlq_by_type);
  $("dlq-types").innerHTML=types.length?types.map(([t,n])=>`<tr><td>${esc(t)}</td><td class="n" id="dlq-${esc(t)}">${int(n)}</td></tr>`).join(""):`<tr><td colspan="2" class="muted">no dead letters</td></tr>`;
  $("alerts").innerHTML=d.alerts.length?d.alerts.map(a=>`<tr><td>${esc(a.name)}</td><td class="${a.firing?"alert-on":"alert-off"}" id="alert-${esc(a.name)}">${a.firing?"FIRING":"ok"}</td><td class="n">${a.value==null?"-":(+a.value.toPrecision(4)).toLocaleString("en-US")}</td></tr>`).join(""):`<tr><td class="muted">no alerts set in the spec</td></tr>`;
  const rate=[],lag=[],self=String(d.version);
  let rows=[];
  if(d.registry){
    d.registry.versions.forEach((v,i)=>{
      const st=v.state,c=COLORS[i%COLORS.length],mine=String(v.version)===self;
      // A scaled-out version's numbers are the version's (the registry's),
      // not this instance's share; unknown while partitions are unreported.
      const own=mine&&!(v.source_partitions>0),unk=v.unreported_partitions>0;
      const pts=mine?d.history:v.history;
      rate.push({name:"v"+v.version+(mine?" (this process)":""),color:c,points:pts.map(p=>[p[0],p[1]])});
      lag.push({name:"v"+v.version+(mine?" (this process)":""),color:c,points:pts.map(p=>[p[0],p[2]])});
      rows.push(`<tr id="version-${v.version}"><td>v${v.version}${v.serving?' <span class="serving">serving</span>':""}${mine?" (here)":""}</td><td><span class="state s-${st}">${st}${v.stopped?(v.exit_error?", stopped on an error: "+esc(v.exit_error):", stopped"):""}</span>${v.paused?", paused":""}${v.reporting===false?", not reporting since "+new Date(v.progress_ms).toLocaleTimeString("en-GB"):""}${unk?` ${v.unreported_partitions} of ${v.source_partitions} partitions reported by no running instance`:""}</td><td class="n">${v.reporting===false?"-":int(own?d.rate:v.rate)}</td><td class="n">${unk?"unknown":own&&lost?"unknown":int(own?d.lag:v.lag)}</td><td class="n">${unk?"-":pct(own?d.percent:v.percent)}</td><td class="n">${unk||v.reporting===false?"-":own?myEta:v.lag===0?"caught up":dur(v.eta_s)}</td></tr>`);
    });
    set("versions-note","registry read "+new Date(d.registry.read_ms).toLocaleTimeString("en-GB")+"; other versions as of their last checkpoint");
    set("promotion",d.registry.promotion||"none recorded");
  }else{
    rate.push({name:"v"+d.version,color:COLORS[0],points:d.history.map(p=>[p[0],p[1]])});
    lag.push({name:"v"+d.version,color:COLORS[0],points:d.history.map(p=>[p[0],p[2]])});
    rows.push(`<tr id="version-${d.version}"><td>v${d.version} (here)</td><td><span class="state">running</span></td><td class="n">${int(d.rate)}</td><td class="n">${lost?"unknown":int(d.lag)}</td><td class="n">${pct(d.percent)}</td><td class="n">${myEta}</td></tr>`);
    set("versions-note","kappa run has no registry: deploy and replay show every version of the job");
    set("promotion","no registry (kappa run)");
  }
  $("versions").innerHTML=rows.join("");
  chart("chart-rate","legend-rate",rate,d.sample_ms);chart("chart-lag","legend-lag",lag,d.sample_ms);
  document.body.dataset.rendered=String(d.sample_ms);
}
async function poll(){
  try{const r=await fetch("/api/status",{cache:"no-store"});render(await r.json());}
  catch(e){set("updated","not reachable: "+e);}
  setTimeout(poll,1000);
}
poll();
</script></body></html>
)KAPPAHTML";

}  // namespace kappa::cli
