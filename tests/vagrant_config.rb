# Prints as JSON what the Vagrantfile in the current directory configures, read by Vagrant's own
# classes: the core settings and, for each provider, its settings with any override applied.
#
# `vagrant validate -p` skips the provider blocks, and `vagrant validate` checks only the default
# provider, and only once that provider is installed. Here each provider's own config class reads
# its block, as `vagrant up --provider NAME` would, so a setting it does not know is reported
# under "errors" ("The following settings shouldn't exist: ...").
require "json"
require "vagrant"

PROVIDERS = %i[virtualbox libvirt].freeze

# What the tests look at: libvirt keeps memory and cpus as settings, VirtualBox turns them into
# `VBoxManage modifyvm` customizations.
SETTINGS = %w[memory cpus customizations].freeze

def provider_report(env, provider)
  # validate_provider=false: read the configuration without asking for the hypervisor itself.
  config = env.vagrantfile.machine_config(:default, provider, env.boxes, nil, false)[:config]
  settings = config.vm.get_provider_config(provider)
  {
    "errors" => settings._detected_errors,
    "settings" => SETTINGS.select { |name| settings.instance_variable_defined?("@#{name}") }
                          .to_h { |name| [name, settings.instance_variable_get("@#{name}")] },
    "synced_folders" => config.vm.synced_folders,
  }
end

env = Vagrant::Environment.new(cwd: Dir.pwd)
vm = env.vagrantfile.config.vm
report = {
  "box" => vm.box,
  "box_version" => vm.box_version,
  "errors" => vm._detected_errors,
  "networks" => vm.networks.map { |kind, options| [kind, options] },
  "provisioners" => vm.provisioners.map do |provisioner|
    { "name" => provisioner.name, "type" => provisioner.type, "run" => provisioner.run,
      "path" => provisioner.config.path, "args" => provisioner.config.args,
      "env" => provisioner.config.env }
  end,
  "providers" => PROVIDERS.to_h { |provider| [provider, provider_report(env, provider)] },
}
puts JSON.generate(report)
