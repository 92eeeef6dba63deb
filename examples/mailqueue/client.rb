# Ruby client of the mail queue: queues mails as fire-and-forget background
# jobs, then watches them with `status` until every one is sent.
#
# Run: ruby client.rb HOST:PORT
#
# A background job returns at once with a job handle; the client never gets the
# result. It can ask the server about the handle (GET_STATUS): "known" while the
# job is queued or running, "running" once a worker has it, the worker's
# WORK_STATUS progress, and no longer known when it is done. Each mail carries a
# unique key, so queueing the same mail twice while it waits makes one job.
require "json"
require "polygear"

server = ARGV.fetch(0, "127.0.0.1:4730")
MAILS = [
  { kind: "welcome", to: "alice@example.com", subject: "Welcome aboard", body: "Hi Alice, your account is ready." },
  { kind: "reset", to: "bob@example.com", subject: "Password reset", body: "Bob, use code 314159 to reset your password." },
  { kind: "digest", to: "carol@example.com", subject: "Your weekly digest", body: "Carol, 12 new posts this week." },
  { kind: "invoice", to: "dave@example.com", subject: "Invoice #1042", body: "Dave, invoice #1042 is due on Friday." },
  { kind: "welcome", to: "erin@example.com", subject: "Welcome aboard", body: "Hi Erin, your account is ready." }
].freeze

def log(line)
  puts "  [ruby client] #{line}"
  $stdout.flush
end

# The unique key names the mail, not the attempt: "welcome:alice@example.com".
def unique_of(mail) = "#{mail[:kind]}:#{mail[:to]}"

# What the server says about a job, in words.
def describe(status)
  return "done" unless status.known?
  return "queued" unless status.running?

  status.denominator.positive? ? "running #{status.numerator}/#{status.denominator}" : "running"
end

client = Polygear::Client.new(servers: [server], timeout: 10)
begin
  handles = {}
  MAILS.each do |mail|
    unique = unique_of(mail)
    handles[unique] = client.submit_background("send_mail", JSON.generate(mail), unique: unique)
    log "queued #{unique.ljust(30)} as #{handles[unique]}"
  end

  # Oops, a double click: the last mail is queued again. It is still waiting, so
  # the server hands back the same job instead of making a second one.
  again = client.submit_background("send_mail", JSON.generate(MAILS.last), unique: unique_of(MAILS.last))
  same = again == handles[unique_of(MAILS.last)]
  log "queued #{unique_of(MAILS.last)} again: #{same ? "same handle #{again}, one mail" : "new job #{again}"}"

  # Poll every job until none is known any more, printing each change of state.
  last = {}
  deadline = Time.now + 30
  until last.size == handles.size && last.values.all?("done")
    raise Polygear::TimeoutError, "mails still queued after 30 s: is a worker running?" if Time.now > deadline

    handles.each do |unique, handle|
      state = describe(client.status(handle))
      log "#{unique.ljust(30)} #{state}" unless last[unique] == state
      last[unique] = state
    end
    sleep 0.05
  end
  log "all #{handles.size} mails sent"
rescue Polygear::Error => e
  warn "  [ruby client] #{e.class}: #{e.message}"
  exit 1
ensure
  client.close
end
