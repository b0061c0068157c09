// The trading desk in Azure: a Python 3.11 Function App on Flex Consumption and everything it
// talks to, reached with one user-assigned managed identity. No account keys, connection strings
// or broker secrets appear here or in the app settings: storage, Event Hubs, Cosmos DB and
// Application Insights take the identity, and the Alpaca keys are Key Vault references.
//
//   az deployment group create -g <group> -f infra/main.bicep -p infra/main.parameters.json
//
// infra/settings.md lists every setting the app reads and whether this template sets it;
// tests/app/test_infra.py keeps the two in step with the code.

targetScope = 'resourceGroup'

// ---- parameters -----------------------------------------------------------------------------

@description('Region of every resource. Flex Consumption must be offered there (az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('Short lowercase name (letters and digits) from which resource names are derived.')
@minLength(3)
@maxLength(11)
param baseName string = 'desk'

@description('Tags applied to every resource.')
param tags object = {}

@description('The account the desk trades: TRADING_ACCOUNT, and the risk entity RiskEntity@<account>.')
param tradingAccount string = 'paper'

@description('The broker adapter. alpaca needs the two Key Vault secrets set before the app starts.')
@allowed([
  'simulated'
  'alpaca'
])
param tradingBroker string = 'simulated'

@description('Trade the live Alpaca account. Paper unless this is said explicitly.')
param alpacaLive bool = false

@description('JSON RiskLimits the desk hands to an account that has never been given limits (TRADING_RISK_LIMITS).')
param riskLimits string = '{"max_order_notional": "250000", "max_open_orders": 50, "max_orders_per_minute": 120, "daily_loss_limit": "5000"}'

@description('Signals that open or grow a position and are older than this many seconds when the ticks trigger works them out are audited, not traded (TRADING_MAX_SIGNAL_AGE_S).')
@minValue(1)
param maxSignalAgeSeconds int = 60

@description('Durable task hub name. One hub per environment: two apps sharing a hub steal each other\'s work.')
param durableTaskHub string = 'TradingDesk'

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on instances across the app. Flex accepts 40 to 1000.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances per Flex scale group: function:<name> for the Event Hub triggers (each scales on its own) and durable for orchestrators, activities and entities.')
param alwaysReady array = [
  {
    name: 'function:ticks'
    instanceCount: 1
  }
  {
    name: 'durable'
    instanceCount: 1
  }
]

@description('Event Hubs Standard throughput units: each admits 1 MB/s or 1,000 events/s.')
@minValue(1)
@maxValue(40)
param eventHubsThroughputUnits int = 1

@description('Partitions of the ticks hub: the most trigger instances that can read it at once.')
@minValue(1)
@maxValue(32)
param ticksPartitions int = 4

@description('Partitions of the trade-updates hub.')
@minValue(1)
@maxValue(32)
param tradeUpdatesPartitions int = 2

@description('How long both hubs keep events, in days (Standard allows up to 7).')
@minValue(1)
@maxValue(7)
param eventHubsRetentionDays int = 1

@description('The consumer group the app\'s Event Hub triggers read. They name none, so $Default, which every hub has; another name is created here and must also be given to the triggers.')
param consumerGroup string = '$Default'

@description('Cosmos DB database of the books (COSMOS_DATABASE).')
param cosmosDatabaseName string = 'trading-desk'

@description('Blob container of the nightly audit archive (AUDIT_ARCHIVE_CONTAINER).')
param archiveContainerName string = 'audit-archive'

@description('Days each archived audit file stays write-once (container time-based retention). 0 sets no policy. The policy is created unlocked: lock it once the period is agreed.')
@minValue(0)
@maxValue(146000)
param archiveRetentionDays int = 2190

@description('Key Vault secret that holds the Alpaca key id.')
param alpacaKeyIdSecretName string = 'alpaca-key-id'

@description('Key Vault secret that holds the Alpaca secret key.')
param alpacaSecretKeySecretName string = 'alpaca-secret-key'

@description('Object id of whoever sets the broker secrets (Key Vault Secrets Officer). Empty: nobody is given the role here.')
param secretsOfficerPrincipalId string = ''

@description('Principal type of secretsOfficerPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param secretsOfficerPrincipalType string = 'User'

@description('Object id of the feed bridge\'s identity, which publishes to both hubs (Azure Event Hubs Data Sender). Empty: nobody is given the role here.')
param publisherPrincipalId string = ''

@description('Principal type of publisherPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param publisherPrincipalType string = 'ServicePrincipal'

@description('More app settings (the optional ones in infra/settings.md), merged over the template\'s.')
param extraAppSettings object = {}

// ---- names and constants --------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id, baseName)
var names = {
  identity: 'id-${baseName}-${suffix}'
  // Storage account names: 3-24 lowercase letters and digits, globally unique.
  storage: take('st${baseName}${suffix}', 24)
  archive: take('arc${baseName}${suffix}', 24)
  eventHubs: 'evhns-${baseName}-${suffix}'
  cosmos: 'cosmos-${baseName}-${suffix}'
  keyVault: take('kv-${baseName}-${suffix}', 24)
  logs: 'log-${baseName}-${suffix}'
  insights: 'appi-${baseName}-${suffix}'
  plan: 'plan-${baseName}-${suffix}'
  app: 'func-${baseName}-${suffix}'
}
var deploymentContainerName = 'app-package'

// The hubs the triggers read (their eventHubName), with their partition counts.
var hubs = [
  {
    name: 'ticks'
    partitions: ticksPartitions
  }
  {
    name: 'trade-updates'
    partitions: tradeUpdatesPartitions
  }
]

// The containers adapters/cosmos_store.py uses, their partition keys and composite indexes.
// Created here because the app's identity holds data-plane roles only and cannot create them.
var cosmosContainers = loadJsonContent('cosmos-containers.json')

// Built-in role definitions (ids are the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}
// Cosmos DB Built-in Data Contributor (a data-plane SQL role, not an Azure RBAC role).
var cosmosDataContributor = '00000000-0000-0000-0000-000000000002'

// The host keeps leases and checkpoints in blobs and durable state in queues and tables.
var hostStorageRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

// ---- identity -------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
  tags: tags
}

// ---- monitoring -----------------------------------------------------------------------------

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: names.logs
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: names.insights
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    // Telemetry is accepted only from the app's identity (Monitoring Metrics Publisher).
    DisableLocalAuth: true
  }
}

// ---- storage: the host's account (durable task hub, trigger checkpoints, deployment package) ----

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: names.storage
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource storageBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: storageBlobs
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource hostStorageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in hostStorageRoles: {
    name: guid(storage.id, identity.id, role)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// ---- storage: the audit archive, write-once, in an account of its own ----------------------

resource archive 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: names.archive
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource archiveBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: archive
  name: 'default'
}

resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: archiveBlobs
  name: archiveContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Each day's file is created once and never replaced (the app uploads without overwrite); the
// policy makes that hold against anyone, the app's identity included.
resource archiveRetention 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (archiveRetentionDays > 0) {
  parent: archiveContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: archiveRetentionDays
    allowProtectedAppendWrites: false
  }
}

// The account holds nothing but the archive, so the account is the narrowest useful scope (the
// app also asks for its container at start-up, which a container-scoped role may refuse).
resource archiveAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(archive.id, identity.id, roles.storageBlobDataContributor)
  scope: archive
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---- Event Hubs -----------------------------------------------------------------------------

resource eventHubs 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: names.eventHubs
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: eventHubsThroughputUnits
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    isAutoInflateEnabled: false
  }
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = [
  for hub in hubs: {
    parent: eventHubs
    name: hub.name
    properties: {
      partitionCount: hub.partitions
      messageRetentionInDays: eventHubsRetentionDays
    }
  }
]

resource appConsumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = [
  for (hub, i) in hubs: if (consumerGroup != '$Default') {
    parent: eventHub[i]
    name: consumerGroup
    properties: {}
  }
]

// Receive only, and only on the two hubs: the app never publishes.
resource hubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (hub, i) in hubs: {
    name: guid(eventHub[i].id, identity.id, roles.eventHubsDataReceiver)
    scope: eventHub[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// The feed bridge (adapters/feed_bridge, run beside the app) is the only publisher.
resource hubSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (hub, i) in hubs: if (!empty(publisherPrincipalId)) {
    name: guid(eventHub[i].id, publisherPrincipalId, roles.eventHubsDataSender)
    scope: eventHub[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
      principalId: publisherPrincipalId
      principalType: publisherPrincipalType
    }
  }
]

// ---- Cosmos DB (serverless) -----------------------------------------------------------------

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: names.cosmos
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    // Identity only: no account keys, and no schema changes through the data plane.
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
  }
}

resource cosmosDatabase 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: cosmos
  name: cosmosDatabaseName
  properties: {
    resource: {
      id: cosmosDatabaseName
    }
  }
}

resource cosmosContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = [
  for container in cosmosContainers: {
    parent: cosmosDatabase
    name: container.name
    properties: {
      resource: {
        id: container.name
        partitionKey: {
          paths: [
            container.partitionKey
          ]
          kind: 'Hash'
          version: 2
        }
        indexingPolicy: {
          indexingMode: 'consistent'
          automatic: true
          includedPaths: [
            {
              path: '/*'
            }
          ]
          excludedPaths: [
            {
              path: '/"_etag"/?'
            }
          ]
          compositeIndexes: container.compositeIndexes
        }
      }
    }
  }
]

// Read and write items of the desk's database, nothing else on the account.
resource cosmosAccess 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = {
  parent: cosmos
  name: guid(cosmos.id, identity.id, cosmosDataContributor)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributor}'
    principalId: identity.properties.principalId
    scope: '${cosmos.id}/dbs/${cosmosDatabaseName}'
  }
  dependsOn: [
    cosmosDatabase
  ]
}

// ---- Key Vault: the broker keys -------------------------------------------------------------

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: names.keyVault
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identity.id, roles.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(secretsOfficerPrincipalId)) {
  name: guid(keyVault.id, secretsOfficerPrincipalId, roles.keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: secretsOfficerPrincipalId
    principalType: secretsOfficerPrincipalType
  }
}

resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---- the Function App -----------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: names.plan
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

var eventHubsHost = replace(replace(eventHubs.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
var clientId = identity.properties.clientId

// Every setting the app reads that this template decides. Keep one setting per line, in this
// block: tests/app/test_infra.py reads the names from here.
var appSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${clientId};Authorization=AAD'
  AZURE_CLIENT_ID: clientId
  DURABLE_TASK_HUB: durableTaskHub
  TICKS_EVENTHUB__fullyQualifiedNamespace: eventHubsHost
  TICKS_EVENTHUB__credential: 'managedidentity'
  TICKS_EVENTHUB__clientId: clientId
  TRADE_UPDATES_EVENTHUB__fullyQualifiedNamespace: eventHubsHost
  TRADE_UPDATES_EVENTHUB__credential: 'managedidentity'
  TRADE_UPDATES_EVENTHUB__clientId: clientId
  TRADING_ACCOUNT: tradingAccount
  TRADING_BROKER: tradingBroker
  ALPACA_KEY_ID: '@Microsoft.KeyVault(SecretUri=${keyVault.properties.vaultUri}secrets/${alpacaKeyIdSecretName}/)'
  ALPACA_SECRET_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.properties.vaultUri}secrets/${alpacaSecretKeySecretName}/)'
  ALPACA_LIVE: alpacaLive ? 'true' : 'false'
  TRADING_RISK_LIMITS: riskLimits
  TRADING_MAX_SIGNAL_AGE_S: string(maxSignalAgeSeconds)
  TRADING_STORE: 'cosmos'
  COSMOS_ENDPOINT: cosmos.properties.documentEndpoint
  COSMOS_DATABASE: cosmosDatabaseName
  AUDIT_ARCHIVE__serviceUri: archive.properties.primaryEndpoints.blob
  AUDIT_ARCHIVE_CONTAINER: archiveContainerName
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: names.app
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with this identity (the app has no system identity).
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      // No browser origin may call the API: the dashboard is served by the app itself.
      cors: {
        allowedOrigins: []
        supportCredentials: false
      }
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReady
      }
      // On Flex the worker runtime lives here; FUNCTIONS_WORKER_RUNTIME is not an app setting.
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    deploymentContainer
    hostStorageAccess
  ]
}

resource appConfig 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app
  name: 'appsettings'
  properties: union(appSettings, extraAppSettings)
  // The host starts on this write: give it its roles first, so it neither fails to reach
  // storage nor caches an unresolved Key Vault reference.
  dependsOn: [
    hostStorageAccess
    archiveAccess
    hubReceiver
    cosmosAccess
    cosmosContainer
    secretsUser
    telemetryPublisher
  ]
}

// ---- outputs --------------------------------------------------------------------------------

output functionAppName string = app.name
output functionAppUrl string = 'https://${app.properties.defaultHostName}'
output keyVaultName string = keyVault.name
output identityClientId string = clientId
output identityPrincipalId string = identity.properties.principalId
output eventHubsNamespace string = eventHubsHost
output cosmosEndpoint string = cosmos.properties.documentEndpoint
output storageAccountName string = storage.name
output archiveAccountName string = archive.name
